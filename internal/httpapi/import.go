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

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/store"
)

// Limits of a CSV import.
const (
	maxImportBytes = 8 << 20
	maxImportRows  = 50000
)

// importColumns are the columns a CSV import must have, in any order.
var importColumns = []string{"email", "phone", "name", "organisation", "components"}

// importAnswer is the body of POST /v1/subscribers/import.
type importAnswer struct {
	Created  int       `json:"created"`
	Updated  int       `json:"updated"`
	Refused  int       `json:"refused"`
	Refusals []refusal `json:"refusals"`
}

type refusal struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// importSubscribers reads a CSV file (header
// email,phone,name,organisation,components; components separated by ";")
// and creates or updates one subscriber per row, each row on its own, so a
// bad row is refused without affecting the others. A row whose email
// address or phone number is already known updates that subscriber's name,
// organisation and components (not its addresses or channels). New
// subscribers wait for double opt-in unless ?confirmed=true.
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
	raw, err := readBody(w, r, maxImportBytes)
	if err != nil {
		return err
	}
	raw = bytes.TrimPrefix(raw, []byte("\uFEFF")) // a spreadsheet's byte order mark
	if !utf8.Valid(raw) {
		// Otherwise a name in another encoding passes validation and is
		// refused by PostgreSQL.
		return fail(http.StatusBadRequest, "", "the file is not UTF-8: save it as CSV UTF-8 and send it again")
	}
	cr := csv.NewReader(bytes.NewReader(raw))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return fail(http.StatusBadRequest, "", "the first line must be the header %s", strings.Join(importColumns, ","))
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(importColumns, h) {
			return fail(http.StatusBadRequest, "", "unknown column %q: the header must be %s", h, strings.Join(importColumns, ","))
		}
		col[h] = i
	}
	for _, c := range importColumns {
		if _, ok := col[c]; !ok {
			return fail(http.StatusBadRequest, "", "column %q is missing: the header must be %s", c, strings.Join(importColumns, ","))
		}
	}
	catalog, err := a.d.Store.ListComponents(r.Context())
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, c := range catalog {
		known[c.Key] = true
	}

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
		if len(rec) != len(header) {
			refuse(line, "has %d fields, the header has %d", len(rec), len(header))
			continue
		}
		if strings.TrimSpace(strings.Join(rec, "")) == "" {
			continue // blank line
		}
		n, reason := a.importRow(rec, col, known)
		if reason != "" {
			refuse(line, "%s", reason)
			continue
		}
		n.ConfirmEmail, n.ConfirmSMS = confirmed, confirmed
		created, err := a.d.Store.ImportSubscriber(r.Context(), n)
		switch {
		case errors.Is(err, store.ErrConflict):
			refuse(line, "the email address and the phone number belong to two different subscribers")
		case errors.Is(err, store.ErrNotFound):
			refuse(line, "a component does not exist")
		case err != nil && store.IsUnavailable(err):
			return err
		case err != nil:
			a.d.Log.WarnContext(r.Context(), "import row failed", "line", line, "error", err)
			refuse(line, "could not be stored")
		case created:
			ans.Created++
		default:
			ans.Updated++
		}
	}
	a.d.Log.InfoContext(r.Context(), "subscribers imported", "created", ans.Created, "updated", ans.Updated, "refused", ans.Refused)
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// importRow validates one CSV row; a non-empty reason refuses it.
func (a *API) importRow(rec []string, col map[string]int, known map[string]bool) (store.NewSubscriber, string) {
	var n store.NewSubscriber
	var err error
	reason := func(err error) string {
		var he *httpError
		if errors.As(err, &he) {
			return he.msg
		}
		return err.Error()
	}
	if n.Email, err = cleanEmail("email", rec[col["email"]]); err != nil {
		return n, reason(err)
	}
	if n.Phone, err = a.cleanPhone("phone", rec[col["phone"]]); err != nil {
		return n, reason(err)
	}
	if n.Email == "" && n.Phone == "" {
		return n, "needs an email address, a phone number or both"
	}
	n.Name = strings.TrimSpace(rec[col["name"]])
	if err := checkText("name", n.Name, maxNameLen, false); err != nil {
		return n, reason(err)
	}
	n.Organisation = strings.TrimSpace(rec[col["organisation"]])
	if err := checkText("organisation", n.Organisation, maxNameLen, false); err != nil {
		return n, reason(err)
	}
	for k := range strings.SplitSeq(rec[col["components"]], ";") {
		k = strings.TrimSpace(k)
		switch {
		case k == "":
		case !event.ValidKey(k):
			return n, fmt.Sprintf("%.60q is not a component key", k)
		case !known[k]:
			return n, fmt.Sprintf("unknown component %q", k)
		case !slices.Contains(n.Components, k):
			n.Components = append(n.Components, k)
		}
	}
	if len(n.Components) == 0 {
		return n, "needs at least one component"
	}
	return n, ""
}
