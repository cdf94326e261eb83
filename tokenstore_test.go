package autorefresh

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// printed returns v formatted with every common fmt verb, and logged with
// slog's text and JSON handlers, as value and as pointer where v is not one.
func printed(v any) []string {
	out := []string{
		fmt.Sprint(v), fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v),
		fmt.Sprintf("%s", v), fmt.Sprintf("%q", v), fmt.Sprintf("%x", v), fmt.Sprintln(v),
		fmt.Sprintf("%v", []any{v}), fmt.Sprintf("%+v", struct{ V any }{v}),
	}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("value", "v", v, slog.Any("any", v), slog.Group("g", "v", v))
	slog.New(slog.NewJSONHandler(&js, nil)).Info("value", "v", v, slog.Any("any", v), slog.Group("g", "v", v))
	return append(out, text.String(), js.String())
}

// checkPrinted fails if any printed form of v shows one of secrets.
func checkPrinted(t *testing.T, what string, v any, secrets ...string) {
	t.Helper()
	for _, out := range printed(v) {
		for _, sec := range secrets {
			if strings.Contains(out, sec) {
				t.Errorf("%s prints the token %q: %s", what, sec, out)
			}
		}
	}
}

func TestMemoryStoreNeverPrintsTokens(t *testing.T) {
	tok := Tokens{AccessToken: "MEMSTORE-ACCESS-7f3a", RefreshToken: "MEMSTORE-REFRESH-91c2"}
	s := NewMemoryStore(tok)
	checkPrinted(t, "*MemoryStore", s, tok.AccessToken, tok.RefreshToken)
	var zero MemoryStore
	zero.Save(context.Background(), tok)
	checkPrinted(t, "saved-to *MemoryStore", &zero, tok.AccessToken, tok.RefreshToken)
	checkPrinted(t, "struct holding a *MemoryStore", struct{ Store TokenStore }{s}, tok.AccessToken, tok.RefreshToken)
}

// TestNilMemoryStoreIsAnError: a Store left nil gives an error from every
// method, never a panic (issue 11), and a nil *MemoryStore in a Store is the
// usual way to leave one nil by accident (a variable declared and assigned
// on one branch only). FileStore already treats a nil *FileStore so; a nil
// *MemoryStore panics in Load, Save and Clear, and SetTokens and Logout
// pass the panic on (RoundTrip and Tokens turn the panic of Load into an
// error).
func TestNilMemoryStoreIsAnError(t *testing.T) {
	ctx := context.Background()
	var nilStore *MemoryStore
	tr := &Transport{Store: nilStore}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Load", func() error { _, err := nilStore.Load(ctx); return err }},
		{"Save", func() error { return nilStore.Save(ctx, Tokens{AccessToken: "a"}) }},
		{"Clear", func() error { return nilStore.Clear(ctx) }},
		{"Transport.SetTokens", func() error { return tr.SetTokens(ctx, Tokens{AccessToken: "a"}) }},
		{"Transport.Logout", func() error { return tr.Logout(ctx) }},
		{"Transport.Tokens", func() error { _, err := tr.Tokens(ctx); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("panicked: %v; want an error", p)
				}
			}()
			if err := c.call(); err == nil {
				t.Error("error = nil; want one")
			}
		})
	}
}
