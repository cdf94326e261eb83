// Package autorefresh makes token-authenticated HTTP calls just work.
//
// A [Transport] is an [http.RoundTripper] that sends the tokens of a
// [TokenStore] with every request. When the server refuses the access token
// (403 with the default header scheme, 401 with [BearerScheme]; see
// [DefaultShouldRefresh]), it refreshes the pair once for all concurrent
// callers, saves it, and sends the request again. Shortly before the access token
// expires (its JWT "exp" claim, or [Tokens.Expiry]) it refreshes ahead of
// time, so that under steady load no request is refused.
//
//	store := autorefresh.NewMemoryStore(autorefresh.Tokens{
//		AccessToken:  access,
//		RefreshToken: refresh,
//	})
//	client := autorefresh.NewClient(http.DefaultClient, &autorefresh.Transport{
//		Store:     store,
//		Refresher: &autorefresh.Endpoint{URL: "https://api.example.com/auth/refreshtoken"},
//	})
//	resp, err := client.Get("https://api.example.com/api/profile")
//
// The client can be handed to any API SDK that accepts an [*http.Client] or
// an [http.RoundTripper]. http.DefaultClient itself is not modified.
//
// Stores: [MemoryStore], [FileStore] (a JSON file shared safely between
// processes) and, in its own module, a Redis store for many replicas.
// Refreshers: [Endpoint] (a GET with accessToken and refreshToken headers
// answered by JSON) and [OAuth2] (RFC 6749 section 6), or any [RefreshFunc].
// [Transport.Login], [Transport.Resume] and [Transport.Logout] start and
// end sessions.
//
// When the refresh token is rejected, the store is cleared and requests
// fail with an error matching [ErrSessionExpired]. A transient failure
// (network error, 5xx, malformed answer) keeps the tokens and is reported as
// a [*RefreshError]; the next request tries again.
package autorefresh
