package subscriber

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/csvsafe"
	"github.com/crier-dev/crier/internal/store"
)

// CSV columns. An import takes ImportColumns; an export writes them and
// the state columns after them, which an import accepts and ignores, so an
// export imports back as it is.
var (
	ImportColumns = []string{"email", "phone", "name", "organisation", "components"}
	// OptionalColumns may be left out of an import.
	OptionalColumns = []string{"role", "webhook_url", "teams_url", "slack_url"}
	StateColumns    = []string{"email_state", "sms_state"}
)

// Channel states in an export.
const (
	StateConfirmed   = "confirmed"
	StateUnconfirmed = "unconfirmed"
	StateOptedOut    = "opted out"
)

// exportPage is how many subscribers an export reads at a time.
const exportPage = 1000

// ExportCSV writes every subscriber to w as CSV: a header, then one row per
// subscriber by id, components separated by ";". Cells a spreadsheet would
// run as formulas are neutralised (csvsafe); the import undoes that.
func ExportCSV(ctx context.Context, st *store.Store, w io.Writer) error {
	cw := csvsafe.NewWriter(w)
	if err := cw.Write(slices.Concat(ImportColumns, OptionalColumns, StateColumns)); err != nil {
		return fmt.Errorf("export subscribers: %w", err)
	}
	var after int64
	for {
		subs, err := st.ListSubscribers(ctx, after, exportPage)
		if err != nil {
			return fmt.Errorf("export subscribers: %w", err)
		}
		for _, s := range subs {
			row := []string{
				s.Email, s.Phone, s.Name, s.Organisation, strings.Join(s.Components, ";"),
				s.Role, s.WebhookURL, s.TeamsURL, s.SlackURL,
				channelState(s.Email, s.EmailConfirmedAt, s.EmailOptedOutAt),
				channelState(s.Phone, s.SMSConfirmedAt, s.SMSOptedOutAt),
			}
			if err := cw.Write(row); err != nil {
				return fmt.Errorf("export subscribers: %w", err)
			}
		}
		if err := cw.Flush(); err != nil {
			return fmt.Errorf("export subscribers: %w", err)
		}
		if len(subs) < exportPage {
			return nil
		}
		after = subs[len(subs)-1].ID
	}
}

func channelState(addr string, confirmed, optedOut *time.Time) string {
	switch {
	case addr == "":
		return ""
	case optedOut != nil:
		return StateOptedOut
	case confirmed == nil:
		return StateUnconfirmed
	}
	return StateConfirmed
}
