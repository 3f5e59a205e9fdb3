package gormaudit_test

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Customer has a serial key, a database default, timestamps, soft delete and audit tags.
type Customer struct {
	ID        uint `gorm:"primaryKey"`
	Name      string
	Email     string
	Plan      string `gorm:"default:free"`
	Balance   int
	Password  string `audit:"redact"`
	Internal  string `audit:"-"`
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
	Orders    []Order
}

// Order belongs to a customer.
type Order struct {
	ID         uint `gorm:"primaryKey"`
	CustomerID uint
	Item       string
	Qty        int
}

// Item is keyed by a serial id and has a unique SKU for upserts; no timestamps.
type Item struct {
	ID  uint   `gorm:"primaryKey"`
	SKU string `gorm:"uniqueIndex"`
	Qty int
}

// Membership has a composite key.
type Membership struct {
	TeamID string `gorm:"primaryKey"`
	UserID int64  `gorm:"primaryKey;autoIncrement:false"`
	Role   string
}

// Device has a UUID key chosen by the application.
type Device struct {
	ID    uuid.UUID `gorm:"type:uuid;primaryKey"`
	Label string
}

// Token has a UUID key chosen by the database.
type Token struct {
	ID    uuid.UUID `gorm:"type:uuid;primaryKey;default:gen_random_uuid()"`
	Label string
}

// Setting has a string key.
type Setting struct {
	Key   string `gorm:"primaryKey"`
	Value string
}

// Attrs is stored as jsonb through driver.Valuer.
type Attrs map[string]any

func (a Attrs) Value() (driver.Value, error) { return json.Marshal(a) }

func (a *Attrs) Scan(v any) error {
	b, ok := v.([]byte)
	if !ok {
		return errors.New("attrs: not bytes")
	}
	return json.Unmarshal(b, a)
}

// Address is embedded with a prefix.
type Address struct {
	Street string
	City   string
}

// Stamp is embedded anonymously.
type Stamp struct {
	Source string
	Secret string `audit:"redact"`
}

// Profile exercises value types.
type Profile struct {
	ID      uint            `gorm:"primaryKey"`
	Doc     json.RawMessage `gorm:"type:jsonb"`
	Attrs   Attrs           `gorm:"type:jsonb"`
	Blob    []byte
	Tags    []string       `gorm:"serializer:json"`
	Prefs   map[string]int `gorm:"serializer:json;type:jsonb"`
	Home    Address        `gorm:"embedded;embeddedPrefix:home_"`
	Price   float64        `gorm:"type:numeric(10,2)"`
	Born    time.Time
	Day     time.Time `gorm:"type:date"`
	Private Address   `gorm:"embedded;embeddedPrefix:priv_" audit:"-"`
	Stamp
}

// Session opts out through Disabler.
type Session struct {
	ID    uint `gorm:"primaryKey"`
	Token string
}

func (Session) AuditDisabled() bool { return true }

// Heartbeat is excluded by option.
type Heartbeat struct {
	ID uint `gorm:"primaryKey"`
	At time.Time
}

// Counter is used by the concurrency tests.
type Counter struct {
	ID    uint `gorm:"primaryKey"`
	Name  string
	Value int
}
