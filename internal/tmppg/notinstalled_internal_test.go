package tmppg

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestNotInstalledSaysHowToInstall: with no PostgreSQL anywhere, Start stops with one message
// that names the install command.
func TestNotInstalledSaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := installDirs
	installDirs = []string{t.TempDir() + "/*/bin"}
	t.Cleanup(func() { installDirs = saved })
	_, err := Start(context.Background())
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Fatalf("Start without PostgreSQL: %v", err)
	}
}
