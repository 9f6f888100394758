package httpapi

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/crier-dev/crier/internal/csvsafe"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
)

// Limits of a CSV import.
const (
	maxImportBytes = 8 << 20
	maxImportRows  = 50000
)

// importColumns are the columns a CSV import must have, in any order; it
// also accepts an export's state columns, and ignores them.
var importColumns = subscriber.ImportColumns

// importAnswer is the body of POST /v1/subscribers/import.
type importAnswer struct {
	Created  int       `json:"created"`
	Updated  int       `json:"updated"`
	Refused  int       `json:"refused"`
	Refusals []refusal `json:"refusals"`
	// WebhookSecrets are the secrets of the webhook destinations the
	// import created, by line: shown this once.
	WebhookSecrets []lineSecret `json:"webhook_secrets,omitempty"`
}

type lineSecret struct {
	Line          int    `json:"line"`
	WebhookSecret string `json:"webhook_secret"`
}

type refusal struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// importSubscribers reads a CSV file (header
// email,phone,name,organisation,components; components separated by ";")
// and creates or updates one subscriber per row through
// subscriber.Service.Import, each row on its own, so a bad row is refused
// without affecting the others. A row whose email address or phone number
// is already known updates that subscriber's name, organisation and
// components (not its addresses or channels). New subscribers wait for
// double opt-in unless ?confirmed=true.
func (a *API) importSubscribers(w http.ResponseWriter, r *http.Request) error {
	if err := requireMediaType(r, "text/csv", "application/csv"); err != nil {
		return err
	}
	confirmed := false
	switch r.URL.Query().Get("confirmed") {
	case "", "false", "0":
	case "true", "1":
		confirmed = true
	default:
		return fail(http.StatusBadRequest, "confirmed", "confirmed must be true or false")
	}
	cr, col, width, err := readImport(w, r)
	if err != nil {
		return err
	}
	catalog, err := a.d.Store.ListComponents(r.Context())
	if err != nil {
		return err
	}
	known := subscriber.NewSnapshot(catalog)

	ans := importAnswer{Refusals: []refusal{}}
	refuse := func(line int, format string, args ...any) {
		ans.Refused++
		ans.Refusals = append(ans.Refusals, refusal{Line: line, Reason: fmt.Sprintf(format, args...)})
	}
	for rows := 0; ; rows++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			refuse(pe.StartLine, "not valid CSV: %v", pe.Err)
			continue
		}
		if err != nil {
			return fail(http.StatusBadRequest, "", "reading the CSV: %v", err)
		}
		line, _ := cr.FieldPos(0)
		if rows >= maxImportRows {
			return fail(http.StatusRequestEntityTooLarge, "", "more than %d rows: split the file", maxImportRows)
		}
		if len(rec) != width {
			refuse(line, "has %d fields, the header has %d", len(rec), width)
			continue
		}
		if strings.TrimSpace(strings.Join(rec, "")) == "" {
			continue // blank line
		}
		created, secret, err := a.subs.Import(r.Context(), known, importInput(rec, col, confirmed))
		reason, err := a.importRefusal(r, line, err)
		switch {
		case err != nil:
			return err
		case reason != "":
			refuse(line, "%s", reason)
		case created:
			ans.Created++
			if secret != "" {
				ans.WebhookSecrets = append(ans.WebhookSecrets, lineSecret{line, secret})
			}
		default:
			ans.Updated++
		}
	}
	a.d.Log.InfoContext(r.Context(), "subscribers imported", "created", ans.Created, "updated", ans.Updated, "refused", ans.Refused)
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// readImport checks that the body is UTF-8 CSV with the import header and
// returns a reader positioned after the header, each column's index and
// the number of fields in the header.
func readImport(w http.ResponseWriter, r *http.Request) (cr *csv.Reader, col map[string]int, width int, err error) {
	raw, err := readBody(w, r, maxImportBytes)
	if err != nil {
		return nil, nil, 0, err
	}
	raw = bytes.TrimPrefix(raw, []byte("\uFEFF")) // a spreadsheet's byte order mark
	if !utf8.Valid(raw) {
		// Otherwise a name in another encoding passes validation and is
		// refused by PostgreSQL.
		return nil, nil, 0, fail(http.StatusBadRequest, "", "the file is not UTF-8: save it as CSV UTF-8 and send it again")
	}
	cr = csv.NewReader(bytes.NewReader(raw))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, nil, 0, fail(http.StatusBadRequest, "", "the first line must be the header %s", strings.Join(importColumns, ","))
	}
	col = map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if slices.Contains(subscriber.StateColumns, h) {
			continue
		}
		if slices.Contains(subscriber.OptionalColumns, h) {
			col[h] = i
			continue
		}
		if !slices.Contains(importColumns, h) {
			return nil, nil, 0, fail(http.StatusBadRequest, "", "unknown column %q: the header must be %s", h, strings.Join(importColumns, ","))
		}
		col[h] = i
	}
	for _, c := range importColumns {
		if _, ok := col[c]; !ok {
			return nil, nil, 0, fail(http.StatusBadRequest, "", "column %q is missing: the header must be %s", c, strings.Join(importColumns, ","))
		}
	}
	return cr, col, len(header), nil
}

// importInput is one CSV row as internal/subscriber takes it: the
// components cell is split at ";", blank keys dropped.
func importInput(rec []string, col map[string]int, confirmed bool) subscriber.Input {
	// A cell an export neutralised ('=...) is read back as it was stored.
	cell := func(name string) *string { v := csvsafe.Restore(rec[col[name]]); return &v }
	components := []string{}
	for k := range strings.SplitSeq(*cell("components"), ";") {
		if k = strings.TrimSpace(k); k != "" {
			components = append(components, k)
		}
	}
	in := subscriber.Input{
		Email: cell("email"), Phone: cell("phone"), Name: cell("name"), Organisation: cell("organisation"),
		Components: &components, Confirmed: confirmed,
	}
	for name, dst := range map[string]**string{"role": &in.Role, "webhook_url": &in.WebhookURL, "teams_url": &in.TeamsURL, "slack_url": &in.SlackURL} {
		if _, ok := col[name]; ok {
			*dst = cell(name)
		}
	}
	return in
}

// importRefusal words why a row was not imported ("" when it was); an
// error fails the whole import.
func (a *API) importRefusal(r *http.Request, line int, err error) (string, error) {
	var fe *subscriber.FieldError
	switch {
	case err == nil:
		return "", nil
	case errors.As(err, &fe) && errors.Is(fe, subscriber.ErrNoAddress):
		return "needs an email address, a phone number or both", nil
	case errors.As(err, &fe) && errors.Is(fe, subscriber.ErrNoComponents):
		return "needs at least one component", nil
	case errors.As(err, &fe):
		return fe.Reason, nil
	case errors.Is(err, subscriber.ErrConflict):
		return "the email address and the phone number belong to two different subscribers", nil
	case store.IsUnavailable(err):
		return "", err
	default:
		a.d.Log.WarnContext(r.Context(), "import row failed", "line", line, "error", err)
		return "could not be stored", nil
	}
}
