package store

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/auditkit/auditkit/core"
)

// OCSFVersion is the version of the Open Cybersecurity Schema Framework that OCSFEvent maps
// records to (metadata.version of every event).
const OCSFVersion = "1.3.0"

// The OCSF classes records map to: class_uid, category_uid and the base of type_uid
// (type_uid = class_uid*100 + activity_id).
const (
	// OCSFClassAPIActivity is API Activity (category Application Activity, 6): HTTP records.
	OCSFClassAPIActivity = 6003
	// OCSFClassEntityManagement is Entity Management (category Identity & Access Management, 3):
	// row changes (insert, update, delete).
	OCSFClassEntityManagement = 3004
	// OCSFClassBaseEvent is the Base Event (category Uncategorized, 0): custom records, which
	// describe application events that no specific class covers.
	OCSFClassBaseEvent = 0
)

// ocsfSeverity maps a record's severity to OCSF severity_id.
var ocsfSeverity = map[core.Severity]int{
	core.SeverityInfo:     1, // Informational
	core.SeverityWarning:  3, // Medium
	core.SeverityError:    4, // High
	core.SeverityCritical: 5, // Critical
}

// ocsfUserType maps an actor type to OCSF user.type_id.
var ocsfUserType = map[core.ActorType]int{
	core.ActorPlatformAdmin: 2,  // Admin
	core.ActorTenantUser:    1,  // User
	core.ActorService:       99, // Other
	core.ActorSystem:        3,  // System
	core.ActorAnonymous:     0,  // Unknown
}

// OCSFEvent maps r to one OCSF event (version OCSFVersion), ready for json.Marshal:
//
//   - an HTTP record is an API Activity (6003): activity from the method (POST create, GET and
//     HEAD read, PUT and PATCH update, DELETE delete, any other method Other), api.operation
//     "METHOD route", http_request, src_endpoint.ip, status_code;
//   - a row change is an Entity Management event (3004): activity create, update or delete
//     from the kind, entity holding the row before the change (as data) and entity_result the
//     row after it;
//   - a custom record is a Base Event (0) with activity Other, activity_name and message the
//     record's action, and the actor and resource under unmapped.
//
// Every event has metadata (version, product auditkit, uid the record id, tenant_uid,
// correlation_uid the request id), time (milliseconds since the epoch) and severity_id.
// Fields OCSF 1.3.0 has no attribute for (trace_id, span_id, diff, the record's metadata)
// are under unmapped.
func OCSFEvent(r *Record) map[string]any {
	md := map[string]any{
		"version": OCSFVersion,
		"product": map[string]any{"name": "auditkit", "vendor_name": "auditkit"},
		"uid":     r.ID.String(),
	}
	if r.TenantID != "" {
		md["tenant_uid"] = r.TenantID
	}
	if r.RequestID != "" {
		md["correlation_uid"] = r.RequestID
	}
	sev, ok := ocsfSeverity[r.Severity]
	if !ok {
		sev = 0
	}
	ev := map[string]any{
		"metadata":    md,
		"time":        r.OccurredAt.UnixMilli(),
		"severity_id": sev,
	}
	unmapped := map[string]any{}
	if r.TraceID != "" {
		unmapped["trace_id"] = r.TraceID
	}
	if r.SpanID != "" {
		unmapped["span_id"] = r.SpanID
	}
	if len(r.Metadata) > 0 {
		unmapped["metadata"] = r.Metadata
	}
	var class, category, activity int
	switch r.Kind {
	case core.KindHTTP:
		class, category = OCSFClassAPIActivity, 6
		activity = ocsfHTTPActivity(r.Method)
		op := r.Method
		if r.Route != "" {
			op += " " + r.Route
		} else if r.Path != "" {
			op += " " + r.Path
		}
		if op == "" {
			op = r.Action
		}
		ev["api"] = map[string]any{"operation": op}
		req := map[string]any{}
		if r.Method != "" {
			req["http_method"] = r.Method
		}
		if r.Path != "" {
			req["url"] = map[string]any{"path": r.Path}
		}
		if r.UserAgent != "" {
			req["user_agent"] = r.UserAgent
		}
		if r.RequestID != "" {
			req["uid"] = r.RequestID
		}
		ev["http_request"] = req
		ev["actor"] = map[string]any{"user": ocsfUser(r)}
		ev["src_endpoint"] = ocsfSrc(r)
		if r.Status != nil {
			ev["status_code"] = strconv.Itoa(*r.Status)
			if *r.Status < 400 {
				ev["status_id"] = 1 // Success
			} else {
				ev["status_id"] = 2 // Failure
			}
		}
		if r.DurationUS != nil {
			ev["duration"] = *r.DurationUS / 1000
		}
	case core.KindInsert, core.KindUpdate, core.KindDelete:
		class, category = OCSFClassEntityManagement, 3
		activity = map[core.Kind]int{core.KindInsert: 1, core.KindUpdate: 3, core.KindDelete: 4}[r.Kind]
		entity := ocsfEntity(r)
		if len(r.Before) > 0 && string(r.Before) != "null" {
			entity["data"] = r.Before
		}
		ev["entity"] = entity
		if r.Kind != core.KindDelete || (len(r.After) > 0 && string(r.After) != "null") {
			result := ocsfEntity(r)
			if len(r.After) > 0 && string(r.After) != "null" {
				result["data"] = r.After
			}
			ev["entity_result"] = result
		}
		ev["actor"] = map[string]any{"user": ocsfUser(r)}
		if r.IP != "" {
			ev["src_endpoint"] = map[string]any{"ip": r.IP}
		}
		if len(r.Diff) > 0 {
			unmapped["diff"] = r.Diff
		}
	default:
		class, category, activity = OCSFClassBaseEvent, 0, 99
		ev["activity_name"] = r.Action
		ev["message"] = r.Action
		unmapped["actor"] = ocsfUser(r)
		if r.ResourceType != "" {
			unmapped["resource_type"] = r.ResourceType
		}
		if r.ResourceID != "" {
			unmapped["resource_id"] = r.ResourceID
		}
		if r.IP != "" {
			unmapped["ip"] = r.IP
		}
	}
	if r.Kind != core.KindCustom {
		unmapped["action"] = r.Action
	}
	ev["class_uid"] = class
	ev["category_uid"] = category
	ev["activity_id"] = activity
	ev["type_uid"] = class*100 + activity
	if len(unmapped) > 0 {
		ev["unmapped"] = unmapped
	}
	return ev
}

// AppendOCSF appends r's OCSF event (OCSFEvent) as one line of JSON to dst.
func AppendOCSF(dst []byte, r *Record) ([]byte, error) {
	b, err := json.Marshal(OCSFEvent(r))
	if err != nil {
		return dst, err
	}
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}

// ocsfHTTPActivity maps an HTTP method to an API Activity activity_id.
func ocsfHTTPActivity(method string) int {
	switch method {
	case http.MethodPost:
		return 1 // Create
	case http.MethodGet, http.MethodHead:
		return 2 // Read
	case http.MethodPut, http.MethodPatch:
		return 3 // Update
	case http.MethodDelete:
		return 4 // Delete
	}
	return 99 // Other
}

// ocsfUser is r's actor as an OCSF user (uid, or the actor type as name when there is no id).
func ocsfUser(r *Record) map[string]any {
	u := map[string]any{"type": string(r.ActorType)}
	if id, ok := ocsfUserType[r.ActorType]; ok {
		u["type_id"] = id
	} else {
		u["type_id"] = 99
	}
	if r.ActorID != "" {
		u["uid"] = r.ActorID
	} else {
		u["name"] = string(r.ActorType)
	}
	if r.ActorEmail != "" {
		u["email_addr"] = r.ActorEmail
	}
	return u
}

// ocsfSrc is the client of an HTTP record; API Activity requires one, so an unknown address is
// named "unknown".
func ocsfSrc(r *Record) map[string]any {
	if r.IP != "" {
		return map[string]any{"ip": r.IP}
	}
	return map[string]any{"name": "unknown"}
}

// ocsfEntity is the changed row as an OCSF managed entity: type the resource type, uid the
// resource id (or, without one, name the resource type).
func ocsfEntity(r *Record) map[string]any {
	e := map[string]any{}
	if r.ResourceType != "" {
		e["type"] = r.ResourceType
	}
	if r.ResourceID != "" {
		e["uid"] = r.ResourceID
	} else {
		e["name"] = r.ResourceType
		if r.ResourceType == "" {
			e["name"] = "unknown"
		}
	}
	return e
}
