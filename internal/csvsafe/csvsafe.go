// Package csvsafe writes CSV that a spreadsheet opens without running
// anything. A cell beginning with =, +, -, @, a tab or a carriage return
// is a formula to Excel, LibreOffice and Google Sheets: "=HYPERLINK(…)"
// becomes a link, "=cmd|…" a command (CSV injection, OWASP). Such cells
// are written with a leading apostrophe, which spreadsheets show as text
// and hide; the database keeps what was entered. Restore undoes it, so a
// file written here imports back as it was.
package csvsafe

import (
	"encoding/csv"
	"io"
	"strings"
)

// triggers are the first characters that make a spreadsheet read a cell
// as a formula.
const triggers = "=+-@\t\r"

// Neutralise returns cell as it is safe to write: with an apostrophe in
// front when it would be read as a formula, or when it already begins with
// an apostrophe followed by such a character (so that Restore gives back
// exactly cell). A phone number in E.164 (+ and digits only) is left as it
// is: a number is not a formula, and the import reads it back.
func Neutralise(cell string) string {
	if cell == "" || isE164(cell) {
		return cell
	}
	if strings.IndexByte(triggers, cell[0]) >= 0 || (cell[0] == '\'' && len(cell) > 1 && strings.IndexByte(triggers, cell[1]) >= 0) {
		return "'" + cell
	}
	return cell
}

// Restore undoes Neutralise: an apostrophe followed by a formula character
// (or by another such apostrophe) is dropped.
func Restore(cell string) string {
	if len(cell) > 1 && cell[0] == '\'' && (strings.IndexByte(triggers, cell[1]) >= 0 ||
		(cell[1] == '\'' && len(cell) > 2 && strings.IndexByte(triggers, cell[2]) >= 0)) {
		return cell[1:]
	}
	return cell
}

func isE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Writer is a csv.Writer whose every cell goes through Neutralise. It ends
// lines with CRLF, as RFC 4180 and spreadsheets expect.
type Writer struct {
	w   *csv.Writer
	buf []string
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	return &Writer{w: cw}
}

// Write writes one record.
func (w *Writer) Write(record []string) error {
	w.buf = w.buf[:0]
	for _, c := range record {
		w.buf = append(w.buf, Neutralise(c))
	}
	return w.w.Write(w.buf)
}

// Flush writes what is buffered and reports the first error of any write.
func (w *Writer) Flush() error {
	w.w.Flush()
	return w.w.Error()
}
