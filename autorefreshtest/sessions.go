package autorefreshtest

import (
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/autorefresh/autorefresh"
)

// This file holds the sessions: logins and the tokens rotation derives
// from them, how refresh tokens are redeemed, and how sessions end.

// session is one login: the family of tokens that rotation derives from it.
type session struct {
	user    string
	client  string // the client_id it was issued to; "" for none
	jkt     string // the DPoP key its refresh tokens are bound to; "" for none
	revoked bool
}

// refreshToken is the state of one issued refresh token.
type refreshToken struct {
	sid    string
	expiry time.Time
	spent  bool
}

// Issue starts a session for user, who need not be in Options.Users, and
// returns its tokens as a login would, without any HTTP exchange and
// without counting a login. Expiry is set to the access token's expiry.
func (s *Server) Issue(user string) autorefresh.Tokens {
	return s.IssueTTL(user, s.opts.AccessTTL)
}

// IssueTTL is like Issue with an access-token lifetime of accessTTL, which
// may be zero or negative to start a session whose access token has already
// expired while its refresh token is valid.
func (s *Server) IssueTTL(user string, accessTTL time.Duration) autorefresh.Tokens {
	now := s.now()
	sid, rt := s.newSession(&session{user: user}, now, true)
	at, exp := s.mint(&claims{Subject: user, Session: sid}, now, accessTTL)
	return autorefresh.Tokens{AccessToken: at, RefreshToken: rt, Expiry: exp}
}

// newSession records sess and returns its ID and, if withRefresh, its first
// refresh token.
func (s *Server) newSession(sess *session, now time.Time, withRefresh bool) (sid, rt string) {
	if withRefresh {
		rt = randomString(32)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextSID++
	sid = fmt.Sprintf("s%d", s.nextSID)
	s.sessions[sid] = sess
	if withRefresh {
		s.refresh[rt] = &refreshToken{sid: sid, expiry: now.Add(s.opts.RefreshTTL)}
	}
	return sid, rt
}

// login checks user's password.
func (s *Server) login(user, password string) bool {
	want, ok := s.users[user]
	return ok && subtle.ConstantTimeCompare([]byte(password), []byte(want)) == 1
}

// grant is the outcome of a successful refresh.
type grant struct {
	tokens  autorefresh.Tokens
	sid     string
	rotated bool // tokens.RefreshToken is new
	drop    bool // FaultDropAfterRotate fired: lose the response
}

// holder is who presents a refresh token: the client and the DPoP key of
// the request.
type holder struct {
	// client is the client_id of the request, checked against the one the
	// session was issued to if checkClient is set (RFC 6749 section 6).
	client      string
	checkClient bool
	// jkt is the thumbprint of the request's DPoP proof key, or "". If
	// bindKey is set (RFC 9449 section 5: a public client), a session
	// bound to a key needs a proof with that key, and an unbound one is
	// bound to jkt.
	jkt     string
	bindKey bool
}

// rotate redeems the refresh token rt: it returns a new access token and,
// unless Options.NoRotation is set, a new refresh token, and marks rt spent.
// The error is one of the errRefresh values.
func (s *Server) rotate(rt string, b holder) (grant, error) {
	if rt == "" {
		s.count(func(st *Stats) { st.RefreshRejections++ })
		return grant{}, errNoRefresh
	}
	next := randomString(32)
	now := s.now()
	var err error
	var g grant
	revoked := false

	s.mu.Lock()
	e := s.refresh[rt]
	var sess *session
	if e != nil {
		sess = s.sessions[e.sid]
	}
	err = s.redeemableLocked(e, sess, now, b)
	switch {
	case err == errRefreshSpent && s.opts.RevokeOnReuse && !sess.revoked:
		sess.revoked, revoked = true, true
	case err == nil:
		if b.bindKey && sess.jkt == "" {
			sess.jkt = b.jkt // a public client's refresh tokens are bound from now on
		}
		g = grant{sid: e.sid, tokens: autorefresh.Tokens{RefreshToken: rt}, drop: s.faults.takeDropLocked()}
		if !s.opts.NoRotation {
			e.spent = true
			s.refresh[next] = &refreshToken{sid: e.sid, expiry: now.Add(s.opts.RefreshTTL)}
			g.tokens.RefreshToken, g.rotated = next, true
		}
	}
	s.mu.Unlock()

	if err != nil {
		s.count(func(st *Stats) {
			st.RefreshRejections++
			if err == errRefreshSpent {
				st.ReuseRejections++
			}
			if revoked {
				st.Revocations++
			}
		})
		if revoked {
			s.logf("autorefreshtest: session %s revoked: refresh token reused", e.sid)
		}
		return grant{}, err
	}
	g.tokens.AccessToken, g.tokens.Expiry = s.mint(&claims{Subject: sess.user, Session: g.sid,
		ClientID: sess.client, Confirmation: confirmation(b.jkt)}, now, s.opts.AccessTTL)
	s.count(func(st *Stats) {
		st.Refreshes++
		if g.drop {
			st.RefreshFaults++
		}
	})
	return g, nil
}

// redeemableLocked returns why the refresh token e of session sess may not
// be redeemed by b at now, or nil. The caller holds s.mu.
func (s *Server) redeemableLocked(e *refreshToken, sess *session, now time.Time, b holder) error {
	switch {
	case e == nil:
		return errRefreshUnknown
	case e.spent:
		return errRefreshSpent
	case sess.revoked:
		return errRefreshRevoked
	case !now.Before(e.expiry):
		return errRefreshExpired
	case b.checkClient && sess.client != b.client:
		return errRefreshClient
	case b.bindKey && sess.jkt != "" && b.jkt == "":
		return errRefreshNoProof
	case b.bindKey && sess.jkt != "" && b.jkt != sess.jkt:
		return errRefreshKey
	}
	return nil
}

// Revoke ends the session that token belongs to, as a server-side logout:
// its refresh tokens stop working and its access tokens are rejected. token
// is any access or refresh token the session issued, current or not, even
// expired. Revoke reports whether token identified a session.
func (s *Server) Revoke(token string) bool {
	var sid string
	s.mu.Lock()
	if e := s.refresh[token]; e != nil {
		sid = e.sid
	}
	s.mu.Unlock()
	if sid == "" {
		if c, err := s.parse(token, false); err == nil {
			sid = c.Session
		}
	}
	n := s.revokeWhere(func(id string, _ *session) bool { return id == sid })
	s.mu.Lock()
	defer s.mu.Unlock()
	return n > 0 || s.sessions[sid] != nil
}

// RevokeUser revokes every session of user and returns how many were live.
func (s *Server) RevokeUser(user string) int {
	return s.revokeWhere(func(_ string, sess *session) bool { return sess.user == user })
}

// RevokeAll revokes every session and returns how many were live.
func (s *Server) RevokeAll() int {
	return s.revokeWhere(func(string, *session) bool { return true })
}

// revokeWhere revokes the live sessions that match and returns their number.
func (s *Server) revokeWhere(match func(sid string, sess *session) bool) int {
	n := 0
	s.mu.Lock()
	for sid, sess := range s.sessions {
		if !sess.revoked && match(sid, sess) {
			sess.revoked = true
			n++
		}
	}
	s.mu.Unlock()
	if n > 0 {
		s.count(func(st *Stats) { st.Revocations += int64(n) })
		s.logf("autorefreshtest: %d session(s) revoked", n)
	}
	return n
}
