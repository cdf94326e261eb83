package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// petAPI is the pet store API that the petstore package calls. In real life
// it runs elsewhere; here it runs in-process and asks the auth server at
// authURL whether each request's access token is good, answering 403 when
// it is not.
type petAPI struct {
	authURL string
	check   *http.Client

	mu     sync.Mutex // guards pets and nextID
	pets   map[int64]petJSON
	nextID int64
}

type petJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Tag  string `json:"tag,omitempty"`
}

func newPetAPI(authURL string) http.Handler {
	api := &petAPI{authURL: authURL, check: new(http.Client), pets: map[int64]petJSON{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pets", api.list)
	mux.HandleFunc("POST /v1/pets", api.create)
	mux.HandleFunc("GET /v1/pets/{id}", api.get)
	mux.HandleFunc("DELETE /v1/pets/{id}", api.delete)
	return api.authenticate(mux)
}

// authenticate passes on the requests whose access token the auth server
// accepts.
func (api *petAPI) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, api.authURL+"/auth/check", nil)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		req.Header["accessToken"] = []string{r.Header.Get("accessToken")}
		resp, err := api.check.Do(req)
		if err != nil {
			writeError(w, http.StatusBadGateway, "auth server unreachable")
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			writeError(w, http.StatusForbidden, "invalid or expired access token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (api *petAPI) list(w http.ResponseWriter, r *http.Request) {
	api.mu.Lock()
	pets := make([]petJSON, 0, len(api.pets))
	for id := int64(1); id <= api.nextID; id++ {
		if p, ok := api.pets[id]; ok {
			pets = append(pets, p)
		}
	}
	api.mu.Unlock()
	writeJSON(w, http.StatusOK, pets)
}

func (api *petAPI) create(w http.ResponseWriter, r *http.Request) {
	var p petJSON
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&p); err != nil || p.Name == "" {
		writeError(w, http.StatusBadRequest, "a pet needs a name")
		return
	}
	api.mu.Lock()
	api.nextID++
	p.ID = api.nextID
	api.pets[p.ID] = p
	api.mu.Unlock()
	writeJSON(w, http.StatusCreated, p)
}

func (api *petAPI) get(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	api.mu.Lock()
	p, ok := api.pets[id]
	api.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "no such pet")
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (api *petAPI) delete(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	api.mu.Lock()
	_, ok := api.pets[id]
	delete(api.pets, id)
	api.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "no such pet")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}
