package petstore

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// setup starts a pet store API that holds pet 1 and answers 404 for other
// IDs, and returns its URL.
func setup(t *testing.T) (url string, userAgents *atomic.Pointer[string]) {
	t.Helper()
	userAgents = new(atomic.Pointer[string])
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pets", func(w http.ResponseWriter, r *http.Request) {
		ua := r.Header.Get("User-Agent")
		userAgents.Store(&ua)
		io.WriteString(w, `[{"id":1,"name":"Rex","tag":"dog"}]`)
	})
	mux.HandleFunc("POST /v1/pets", func(w http.ResponseWriter, r *http.Request) {
		var p NewPet
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&p) != nil {
			http.Error(w, `{"message":"bad pet"}`, http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(Pet{ID: 2, Name: p.Name, Tag: p.Tag})
	})
	mux.HandleFunc("GET /v1/pets/1", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id":1,"name":"Rex","tag":"dog"}`)
	})
	mux.HandleFunc("DELETE /v1/pets/1", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/v1/pets/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"no such pet"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/v1", userAgents
}

func TestClient(t *testing.T) {
	url, userAgents := setup(t)
	ctx := t.Context()
	c := NewClient(url + "/")

	pets, err := c.ListPets(ctx)
	if err != nil {
		t.Fatalf("ListPets: %v", err)
	}
	if len(pets) != 1 || pets[0] != (Pet{ID: 1, Name: "Rex", Tag: "dog"}) {
		t.Errorf("ListPets = %+v; want [Rex]", pets)
	}
	if got := *userAgents.Load(); got != "petstore-go/1.0" {
		t.Errorf("User-Agent = %q; want %q", got, "petstore-go/1.0")
	}
	pet, err := c.CreatePet(ctx, NewPet{Name: "Tom", Tag: "cat"})
	if err != nil {
		t.Fatalf("CreatePet: %v", err)
	}
	if *pet != (Pet{ID: 2, Name: "Tom", Tag: "cat"}) {
		t.Errorf("CreatePet = %+v; want Tom with ID 2", pet)
	}
	if pet, err := c.GetPet(ctx, 1); err != nil || pet.Name != "Rex" {
		t.Errorf("GetPet(1) = %+v, %v; want Rex", pet, err)
	}
	if err := c.DeletePet(ctx, 1); err != nil {
		t.Errorf("DeletePet(1): %v", err)
	}

	_, err = c.GetPet(ctx, 7)
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("GetPet(7): %v; want an *Error", err)
	}
	if apiErr.StatusCode != http.StatusNotFound || apiErr.Message != "no such pet" {
		t.Errorf("GetPet(7) error = %+v; want 404 no such pet", apiErr)
	}
}

type recordingTransport struct {
	calls atomic.Int64
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.calls.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestOptions(t *testing.T) {
	url, userAgents := setup(t)
	tests := []struct {
		name string
		opt  func(*recordingTransport) Option
	}{
		{"WithHTTPClient", func(rt *recordingTransport) Option { return WithHTTPClient(&http.Client{Transport: rt}) }},
		{"WithTransport", func(rt *recordingTransport) Option { return WithTransport(rt) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := new(recordingTransport)
			c := NewClient(url, tt.opt(rt), WithUserAgent("test/2"))
			if _, err := c.ListPets(t.Context()); err != nil {
				t.Fatalf("ListPets: %v", err)
			}
			if got := rt.calls.Load(); got != 1 {
				t.Errorf("calls through the supplied transport = %d; want 1", got)
			}
			if got := *userAgents.Load(); got != "test/2" {
				t.Errorf("User-Agent = %q; want %q", got, "test/2")
			}
		})
	}
}

func TestMalformedResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id":`)
	}))
	t.Cleanup(srv.Close)
	_, err := NewClient(srv.URL).GetPet(t.Context(), 1)
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Errorf("GetPet with a truncated answer: %v; want a *json.SyntaxError", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "petstore: ") {
		t.Errorf("error %q does not start with the package name", err)
	}
}
