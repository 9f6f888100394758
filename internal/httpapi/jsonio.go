package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/redact"
	"github.com/crier-dev/crier/internal/store"
)

// maxJSONBody bounds the body of API requests other than events and CSV
// imports.
const maxJSONBody = 64 << 10

// apiError is the body of every error answer of the JSON API.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// httpError is an answer decided by a handler: a status and what to say.
type httpError struct {
	status int
	field  string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func fail(status int, field, format string, args ...any) *httpError {
	return &httpError{status: status, field: field, msg: fmt.Sprintf(format, args...)}
}

// apiHandler handles one API request; a returned error becomes the answer.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

// apiRoute checks the bearer token, then runs h and turns its error into a
// JSON answer.
func (a *API) apiRoute(h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !a.validAPIToken(bearer(r)) {
			if limited, err := a.authFailed(r); err != nil || limited {
				if err != nil {
					a.writeAPIError(w, r, err)
					return
				}
				w.Header().Set("Retry-After", retryAfterSeconds(a.cfg.AuthFailPerClient))
				writeJSON(w, http.StatusTooManyRequests, apiError{Error: "too many wrong tokens from this address; wait and try again"})
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="crier"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "missing or invalid bearer token"})
			return
		}
		if err := h(w, r); err != nil {
			a.writeAPIError(w, r, err)
		}
	})
}

func (a *API) writeAPIError(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		if he.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		writeJSON(w, he.status, apiError{Error: he.msg, Field: he.field})
	case errors.As(err, &mbe):
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)})
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: "not found"})
	case store.IsUnavailable(err):
		a.d.Log.WarnContext(r.Context(), "api request failed: database unavailable", "path", r.Pattern, "error", redact.String(err.Error()))
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the database is unavailable; try again shortly"})
	default:
		a.d.Log.ErrorContext(r.Context(), "api request failed", "path", r.Pattern, "error", redact.String(err.Error()))
		writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal error"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func hashTokens(tokens []string) [][32]byte {
	out := make([][32]byte, len(tokens))
	for i, t := range tokens {
		out[i] = sha256.Sum256([]byte(t))
	}
	return out
}

// authFailed counts a wrong bearer token or session cookie of r's client
// against the deployment-wide limit, and reports whether the client is over
// it. A request with no credentials at all is not counted: it guesses
// nothing.
func (a *API) authFailed(r *http.Request) (limited bool, err error) {
	if bearer(r) == "" && r.Header.Get("Authorization") == "" {
		if c, cerr := r.Cookie(sessionCookie); cerr != nil || c.Value == "" {
			return false, nil
		}
	}
	ok, err := a.authFailClient.allow(r.Context(), a.client(r), a.cfg.Now())
	if err != nil {
		return false, err
	}
	if !ok {
		a.d.Log.WarnContext(r.Context(), "wrong credentials rate-limited", "path", r.Pattern)
	}
	return !ok, nil
}

// retryAfterSeconds is a Retry-After value: the time to regain one try.
func retryAfterSeconds(l Limit) string {
	return strconv.Itoa(max(1, int(l.Every.Seconds())))
}

// validAPIToken compares tok with every configured token in constant time
// (over fixed-size hashes, so neither content nor length leaks).
func (a *API) validAPIToken(tok string) bool {
	if tok == "" {
		return false
	}
	h := sha256.Sum256([]byte(tok))
	ok := 0
	for _, want := range a.apiTokenHashes {
		ok |= subtle.ConstantTimeCompare(h[:], want[:])
	}
	return ok == 1
}

// requireMediaType answers 415 unless the request's Content-Type is one of
// types.
func requireMediaType(r *http.Request, types ...string) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		for _, t := range types {
			if strings.EqualFold(mt, t) {
				return nil
			}
		}
	}
	return fail(http.StatusUnsupportedMediaType, "", "Content-Type must be %s", strings.Join(types, " or "))
}

// readBody reads at most limit bytes of the body: 413 beyond.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, fail(http.StatusRequestEntityTooLarge, "", "the body is %d bytes, more than the limit of %d", r.ContentLength, limit)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fail(http.StatusRequestEntityTooLarge, "", "the body is more than the limit of %d bytes", limit)
	}
	if err != nil {
		return nil, fail(http.StatusBadRequest, "", "reading the body: %v", err)
	}
	return raw, nil
}

// wellFormedObject answers 400 unless raw is UTF-8 holding exactly one JSON
// object.
func wellFormedObject(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return fail(http.StatusBadRequest, "", "the body is empty; send a JSON object")
	}
	if !utf8.Valid(raw) {
		return fail(http.StatusBadRequest, "", "the body is not valid UTF-8")
	}
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fail(http.StatusBadRequest, "", "malformed JSON at byte %d: %v", se.Offset, se)
		}
		return fail(http.StatusBadRequest, "", "malformed JSON")
	}
	if bytes.TrimSpace(raw)[0] != '{' {
		return fail(http.StatusBadRequest, "", "the body must be a JSON object")
	}
	if key, dup := event.DuplicateKey(raw); dup {
		return fail(http.StatusBadRequest, key, "the key %q appears more than once; send each field once", key)
	}
	return nil
}

// decodeJSON reads a JSON object body into dst: 415 for another
// Content-Type, 413 over maxJSONBody, 400 when not well-formed, 422 for
// unknown fields and values of the wrong type.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if err := requireMediaType(r, "application/json"); err != nil {
		return err
	}
	raw, err := readBody(w, r, maxJSONBody)
	if err != nil {
		return err
	}
	if err := wellFormedObject(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fail(http.StatusUnprocessableEntity, te.Field, "%s must be a JSON %s, not %s", te.Field, jsonKind(te), te.Value)
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name = strings.Trim(name, `"`)
			return fail(http.StatusUnprocessableEntity, name, "unknown field %q", name)
		}
		return fail(http.StatusUnprocessableEntity, "", "%v", err)
	}
	return nil
}

func jsonKind(te *json.UnmarshalTypeError) string {
	t := te.Type
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Map, reflect.Struct:
		return "object"
	default:
		return "number"
	}
}

// queryInt parses an optional non-negative integer query parameter: def
// when absent, 400 when malformed or above max.
func queryInt(r *http.Request, name string, def, max int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > max {
		return 0, fail(http.StatusBadRequest, name, "%s must be a whole number from 0 to %d", name, max)
	}
	return n, nil
}

// pageQuery reads the keyset pagination of a list: the id to start after
// (default 0) and how many rows to return (default 100, 1 to 1,000).
func pageQuery(r *http.Request) (after, limit int64, err error) {
	if after, err = queryInt(r, "after", 0, 1<<62); err != nil {
		return 0, 0, err
	}
	if limit, err = queryInt(r, "limit", 100, 1000); err != nil {
		return 0, 0, err
	}
	return after, max(1, limit), nil
}
