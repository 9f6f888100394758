package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/compose"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/httpapi"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
	"github.com/crier-dev/crier/internal/token"
)

// FuzzImportCSV posts arbitrary bytes to POST /v1/subscribers/import (the
// CSV parser is not a function of its own, so the handler is the unit) and
// checks that it never panics or fails with 5xx, that its answer is
// self-consistent (every refused row has a line and a reason, the counts
// add up and never exceed the rows sent, no row that passed validation is
// then refused by the database), that the database gained exactly the
// subscribers it says it created, and that whatever it stored is
// well-formed: an email address with an @, a phone number in E.164, at
// least one subscription.
func FuzzImportCSV(f *testing.F) {
	header := "email,phone,name,organisation,components\n"
	for _, s := range []string{
		header + "jo@hillcrest.example,07400 123456,Jo Bloggs,Hillcrest Care,emar;capa\n",
		header + "deputy@hillcrest.example,,\"Deputy, Manager\",Hillcrest,atlas-sync/sync-pod-a\n,+447400123457,Nurse,,atlas-sync\n",
		"\uFEFF" + "Components,Organisation,Name,Phone,Email\r\nemar,Org,Name,,a@b.example\r\n",
		header + "not an address,,x,,emar\nx@y.example,01632 960000,,,emar\n,,,,emar\nx@y.example,,,,unknown\n",
		header + "\"unterminated,,,,emar\n",
		header + "a@b.example,,\"multi\nline\",,emar\n",
		header + "a@b.example,,na\x00me,,emar\n",
		header + "a@b.example,,\xff\xfe,,emar\n",
		header + "a@b.example,,x,,emar;;Emar;emar/../capa\n",
		header + "a@b.example,+447400123456,x,,emar\nb@b.example,+447400123456,y,,capa\n",
		header + "a@b.example\n",
		"email,phone\nx,y\n",
		"",
	} {
		f.Add([]byte(s))
	}

	ctx := context.Background()
	st := pgtest.NewStore(f)
	if err := example.Load(ctx, st, example.Components(), nil); err != nil {
		f.Fatal(err)
	}
	signer, err := token.NewSigner([]byte("fuzz-key-fuzz-key-fuzz-key-fuzz-key!"))
	if err != nil {
		f.Fatal(err)
	}
	const base = "http://crier.test"
	api, err := httpapi.New(httpapi.Config{APITokens: []string{apiToken}, PublicURL: base}, httpapi.Deps{
		Store: st, Signer: signer, Links: compose.New(compose.Config{PublicURL: base}, st, nil, signer),
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	h := api.Handler()
	e164 := regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	count := func(t *testing.T) int {
		var n int
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM subscribers`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		before := count(t)
		req := httptest.NewRequest(http.MethodPost, "/v1/subscribers/import?confirmed=true", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+apiToken)
		req.Header.Set("Content-Type", "text/csv")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		var ans struct {
			Created, Updated, Refused int
			Refusals                  []struct {
				Line   int
				Reason string
			}
			Error string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
			t.Fatalf("answer %d is not JSON: %q", rec.Code, rec.Body.String())
		}
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if ans.Error == "" {
				t.Fatalf("%d without an error: %q", rec.Code, rec.Body.String())
			}
			if after := count(t); after != before {
				t.Fatalf("refused import (%d) changed the subscribers from %d to %d", rec.Code, before, after)
			}
			return
		default:
			t.Fatalf("import of %q answered %d %s", body, rec.Code, rec.Body.String())
		}
		if ans.Refused != len(ans.Refusals) || ans.Created < 0 || ans.Updated < 0 {
			t.Fatalf("inconsistent answer %s", rec.Body.String())
		}
		lines := strings.Count(string(body), "\n") + 1
		if ans.Created+ans.Updated+ans.Refused > lines {
			t.Fatalf("%d rows accounted for in %d lines: %s", ans.Created+ans.Updated+ans.Refused, lines, rec.Body.String())
		}
		for _, r := range ans.Refusals {
			if r.Line < 1 || r.Line > lines || strings.TrimSpace(r.Reason) == "" {
				t.Fatalf("refusal %+v of %q", r, body)
			}
			// A row that passed validation and was then refused by the
			// database means validation let something through.
			if strings.Contains(r.Reason, "could not be stored") {
				t.Fatalf("row %d of %q passed validation but could not be stored", r.Line, body)
			}
		}
		if after := count(t); after != before+ans.Created {
			t.Fatalf("answer says %d created, the subscribers went from %d to %d", ans.Created, before, after)
		}
		rows, err := st.Pool().Query(ctx, `
			SELECT coalesce(email, ''), coalesce(phone, ''), name,
			       coalesce((SELECT name FROM organisations WHERE key = s.organisation_key), ''),
			       (SELECT count(*) FROM subscriptions WHERE subscriber_id = s.id)
			FROM subscribers s ORDER BY id DESC LIMIT $1`, ans.Created+ans.Updated)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var email, phone, name, org string
			var subs int
			if err := rows.Scan(&email, &phone, &name, &org, &subs); err != nil {
				t.Fatal(err)
			}
			if (email == "" && phone == "") || (email != "" && !strings.Contains(email, "@")) ||
				(phone != "" && !e164.MatchString(phone)) || subs == 0 ||
				strings.ContainsAny(name+org, "\x00\r\n") {
				t.Fatalf("stored subscriber email %q phone %q name %q organisation %q with %d subscriptions from %q",
					email, phone, name, org, subs, body)
			}
		}
	})
}
