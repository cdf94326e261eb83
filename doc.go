// Package autorefresh makes token-authenticated HTTP calls just work.
//
// A [Transport] is an [http.RoundTripper] that sends the tokens of a
// [TokenStore] with every request. When the server refuses the access token
// (403 with the default header scheme, 401 with [BearerScheme]; see
// [DefaultShouldRefresh]), it refreshes the pair once for all concurrent
// callers, saves it, and sends the request again. Shortly before the access
// token expires (its JWT "exp" claim, or [Tokens.Expiry]) it refreshes in the
// background while requests go on with the token they have, so that under
// steady load no request is refused and none waits.
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
// For an OAuth 2.0 server the Refresher is an [OAuth2], found by discovery
// or given its TokenURL; the access token then goes in "Authorization:
// Bearer", and the refresh token only to the token endpoint. A [FileStore]
// keeps the tokens across restarts, and [Transport.SetTokens] hands over
// those of your login (an authorization code exchange, for example):
//
//	tr := &autorefresh.Transport{
//		Store:     autorefresh.NewFileStore(filepath.Join(dir, "tokens.json")),
//		Refresher: &autorefresh.OAuth2{Issuer: "https://accounts.example.com", ClientID: "my-app"},
//	}
//	err := tr.SetTokens(ctx, autorefresh.Tokens{AccessToken: access, RefreshToken: refresh})
//	client := autorefresh.NewClient(nil, tr)
//
// The examples of this package run each main use against an in-process
// server: [Endpoint] ([NewClient]), [OAuth2] with discovery, revocation on
// [Transport.Logout], [ClientCredentials], private_key_jwt
// ([AuthStylePrivateKeyJWT]), [DPoP], [FileStore], [Transport.Login],
// [Transport.Resume] and custom [HeaderScheme] values.
//
// Stores: [MemoryStore], [FileStore] (a JSON file shared safely between
// processes) and, in its own module, a Redis store for many replicas.
// Refreshers: [Endpoint] (a GET with accessToken and refreshToken headers
// answered by JSON), [OAuth2] (RFC 6749 section 6, with discovery,
// revocation on logout and private_key_jwt) and [ClientCredentials] (RFC
// 6749 section 4.4, for services), or any [RefreshFunc]. A [DPoP] key makes
// the tokens sender-constrained (RFC 9449). [Transport.Login],
// [Transport.Resume] and [Transport.Logout] start and end sessions.
//
// When the refresh token is rejected, the store is cleared and requests
// fail with an error matching [ErrSessionExpired]. A transient failure
// (network error, 5xx, malformed answer) keeps the tokens and is reported as
// a [*RefreshError]; the next request tries again, and after repeated
// failures requests fail fast for a short back-off ([ErrBackoff]).
//
// # How it works
//
// A session is the time from a login (SetTokens, Login, tokens found in the
// store) to its end: a Logout, or a refresh token that the server rejects.
// Within a session the tokens change at every refresh. Each change makes a
// new state: an immutable snapshot of the pair in use, with a generation
// number, kept behind an atomic pointer, so that a request reads it without
// a lock (state.go). One unexported type, the token manager
// (manager.go), owns the states, the single flight that refreshes them and
// the store; the Transport only sends requests, and asks it for the state
// to send them with. A state is one of:
//
//   - unloaded: before first use. The first request loads the store.
//   - with tokens: requests carry them. When the token is due (within the
//     early-refresh window before its expiry; see Transport.EarlyRefresh) a
//     refresh starts in the background and requests go on with it; once it
//     has expired, requests wait for the refresh.
//   - without tokens: never logged in, logged out, or ended (a state that
//     ended a session keeps the reason, and requests refused with the
//     tokens of that session fail with it). Requests go out without
//     tokens; when one is refused, the store is read again, in case another
//     holder logged in.
//
// Who may move the state, and from which generation:
//
//   - A refresh of generation g runs at most once at a time for all
//     callers (its single-flight key names g). Its result replaces g only
//     if g is still current: a refresh never undoes a SetTokens or a
//     Logout that happened while it ran. A refused request of an older
//     generation does not refresh: it is sent again with the current
//     tokens.
//   - Before every refresh, the manager reads the store (under its lock
//     when it is a Locker) and compares the whole stored pair with what the
//     store held when generation g was made. A pair another holder saved is
//     adopted instead of refreshing; a pair of g's own that could not be
//     saved is saved first; a store emptied by another holder ends the
//     session.
//   - A rejected refresh of generation g clears the store only if it still
//     holds the rejected pair (another holder's newer pair is adopted), and
//     ends the session only if g is still current.
//   - SetTokens and Logout replace the current state whatever it is, at
//     once for requests, then write the store. Writes to the store happen
//     one at a time (under the store's Locker lock, or the manager's write
//     lock otherwise) and only for the newest generation, so that the store
//     ends up holding what memory holds. A Logout whose store write failed
//     keeps the Transport logged out: it does not read the store again
//     until a SetTokens succeeds.
//
// No lock is held while a request is sent, while a refresh call runs
// (except a Locker's, which exists for exactly that) or while the store is
// read.
package autorefresh
