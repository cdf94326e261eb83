// Package petstore is a client for a small pet store API, written the way
// OpenAPI code generators write clients: typed methods, functional options,
// and an *http.Client (or http.RoundTripper) that the caller may supply.
//
// It knows nothing about authentication. Handing it a client made by
// autorefresh.NewClient is all it takes to call an API that needs tokens.
package petstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxResponse bounds the size of a response body that is read.
const maxResponse = 1 << 20

// Client calls the pet store API. It is safe for concurrent use.
type Client struct {
	baseURL    string
	httpClient *http.Client
	userAgent  string
}

// An Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with c.
func WithHTTPClient(c *http.Client) Option {
	return func(cl *Client) { cl.httpClient = c }
}

// WithTransport makes the Client send its requests through rt.
func WithTransport(rt http.RoundTripper) Option {
	return func(cl *Client) { cl.httpClient = &http.Client{Transport: rt} }
}

// WithUserAgent sets the User-Agent header of the requests.
func WithUserAgent(ua string) Option {
	return func(cl *Client) { cl.userAgent = ua }
}

// NewClient returns a Client for the API at baseURL, for example
// "https://pets.example.com/v1". Without options it uses
// http.DefaultClient.
func NewClient(baseURL string, opts ...Option) *Client {
	c := &Client{
		baseURL:    strings.TrimSuffix(baseURL, "/"),
		httpClient: http.DefaultClient,
		userAgent:  "petstore-go/1.0",
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Pet is a pet in the store.
type Pet struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Tag  string `json:"tag,omitempty"`
}

// NewPet is the body of CreatePet.
type NewPet struct {
	Name string `json:"name"`
	Tag  string `json:"tag,omitempty"`
}

// Error is an answer of the API other than 2xx.
type Error struct {
	StatusCode int    `json:"-"`
	Message    string `json:"message"`
}

// Error describes the API's error answer.
func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("petstore: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("petstore: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// ListPets returns the pets in the store.
func (c *Client) ListPets(ctx context.Context) ([]Pet, error) {
	var pets []Pet
	err := c.do(ctx, http.MethodGet, "/pets", nil, &pets)
	return pets, err
}

// CreatePet adds a pet to the store and returns it with its ID.
func (c *Client) CreatePet(ctx context.Context, p NewPet) (*Pet, error) {
	var pet Pet
	if err := c.do(ctx, http.MethodPost, "/pets", p, &pet); err != nil {
		return nil, err
	}
	return &pet, nil
}

// GetPet returns the pet with the given ID.
func (c *Client) GetPet(ctx context.Context, id int64) (*Pet, error) {
	var pet Pet
	if err := c.do(ctx, http.MethodGet, "/pets/"+strconv.FormatInt(id, 10), nil, &pet); err != nil {
		return nil, err
	}
	return &pet, nil
}

// DeletePet removes the pet with the given ID.
func (c *Client) DeletePet(ctx context.Context, id int64) error {
	return c.do(ctx, http.MethodDelete, "/pets/"+strconv.FormatInt(id, 10), nil, nil)
}

// do sends a request with in as its JSON body (if not nil) and decodes
// the JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	u, err := url.Parse(c.baseURL + path)
	if err != nil {
		return fmt.Errorf("petstore: %w", err)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("petstore: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("petstore: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("petstore: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("petstore: %s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &Error{StatusCode: resp.StatusCode}
		json.Unmarshal(data, apiErr) // the message is optional
		return apiErr
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("petstore: %s %s: decode response: %w", method, path, err)
	}
	return nil
}
