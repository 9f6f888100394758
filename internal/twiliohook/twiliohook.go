// Package twiliohook serves Twilio's webhooks:
//
//	POST /webhooks/twilio/status   delivery reports (StatusCallback)
//	POST /webhooks/twilio/inbound  incoming texts: STOP, START, HELP, and OK (acknowledgement)
//
// Every request must carry a valid X-Twilio-Signature for the auth token;
// anything else is refused with 403 and changes nothing.
package twiliohook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/publicurl"
	"github.com/crier-dev/crier/internal/sms"
	"github.com/crier-dev/crier/internal/store"
)

// Config holds what the handlers need to verify requests.
type Config struct {
	// AuthToken is the Twilio auth token the signatures are made with.
	AuthToken string
	// PublicURL is crier's external base URL: Twilio signs the URL it
	// called, which is PublicURL + the request path and query.
	PublicURL string
	// HelpText answers a HELP message, and any text that is no keyword.
	HelpText string
	// AckImpacts are the impacts whose incidents ask for acknowledgement
	// (CRIER_ACK_IMPACTS): an OK reply acknowledges the latest of them.
	AckImpacts []string
}

// Handler serves the webhooks.
type Handler struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
}

// New returns the webhook handler.
func New(cfg Config, st *store.Store, log *slog.Logger) *Handler {
	if cfg.HelpText == "" {
		cfg.HelpText = "Incident alerts for care homes. Reply OK to confirm you have seen an alert, STOP to stop texts, START to start again."
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Handler{cfg: cfg, store: st, log: log}
}

// Register adds the routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+publicurl.TwilioStatusPath, h.verified(h.status))
	mux.HandleFunc("POST "+publicurl.TwilioInboundPath, h.verified(h.inbound))
}

const maxBody = 64 << 10

// maxNote is the most characters of an OK reply kept as its note.
const maxNote = 1000

// verified parses the form and checks X-Twilio-Signature before calling next.
func (h *Handler) verified(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		sig := r.Header.Get("X-Twilio-Signature")
		url := h.cfg.PublicURL + r.URL.RequestURI()
		if sig == "" || !sms.VerifySignature(h.cfg.AuthToken, url, r.PostForm, sig) {
			h.log.WarnContext(r.Context(), "twilio webhook refused: bad signature", "path", r.URL.Path)
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// Twilio's final message states and the delivery states they map to.
var finalStates = map[string]string{
	"delivered":   store.StateDelivered,
	"undelivered": store.StateUndelivered,
	"failed":      store.StateFailed,
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sid := r.PostForm.Get("MessageSid")
	twStatus := r.PostForm.Get("MessageStatus")
	code := r.PostForm.Get("ErrorCode")
	state, final := finalStates[twStatus]
	if sid == "" || !final {
		// queued, sending, sent: nothing to record beyond what the sender did.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	msg := ""
	if code != "" {
		msg = "twilio error " + code + " (" + twStatus + ")"
	}
	news, err := h.apply(ctx, sid, state, code, msg)
	if err != nil {
		h.log.ErrorContext(ctx, "twilio status", "error", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	// 21610: the recipient has opted out with the carrier. Only a report
	// that is news counts: a replayed one, after the recipient texted
	// START, must not opt them out again.
	if code == "21610" && news {
		if _, err := h.store.OptOutPhone(ctx, r.PostForm.Get("To")); err != nil {
			h.log.ErrorContext(ctx, "opt out after 21610", "error", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// apply records a final status of the text sid. A report can come before
// the send is recorded (the outcome waits to be written with others, or its
// process died and the lease will bring it back): it is then kept, and
// applied when the send is recorded (store.ApplyKeptStatuses). Looking again
// after keeping it closes the gap with a send recorded in between, whose
// worker's look-up of kept reports came before this one was kept. It
// reports whether the report was news: it moved a delivery, or was kept.
// A report repeated or replayed, or one that would move a delivery back,
// is not.
func (h *Handler) apply(ctx context.Context, sid, state, code, msg string) (news bool, err error) {
	matched, moved, err := h.store.ProviderStatus(ctx, sid, state, code, msg)
	if err != nil || matched {
		return moved, err
	}
	if err := h.store.KeepProviderStatus(ctx, sid, state, code, msg); err != nil {
		return false, err
	}
	h.log.InfoContext(ctx, "twilio status before its send was recorded: kept", "message_sid", sid, "status", state)
	_, err = h.store.ApplyKeptStatuses(ctx)
	return true, err
}

// Keywords, matched case- and whitespace-insensitively against the whole
// message.
var (
	stopWords  = map[string]bool{"STOP": true, "STOPALL": true, "UNSUBSCRIBE": true, "CANCEL": true, "END": true, "QUIT": true}
	startWords = map[string]bool{"START": true, "UNSTOP": true}
	helpWords  = map[string]bool{"HELP": true, "INFO": true}
	// ackWords acknowledge when a text begins with one ("OK, on paper").
	ackWords = map[string]bool{"OK": true, "YES": true, "Y": true, "1": true}
)

// firstWord is the text's first word, upper case, without trailing
// punctuation ("Ok," is OK).
func firstWord(body string) string {
	f := strings.Fields(body)
	if len(f) == 0 {
		return ""
	}
	return strings.ToUpper(strings.TrimRight(f[0], ".,!;:"))
}

// Keyword normalises an incoming text for keyword matching: upper case,
// with all whitespace removed.
func Keyword(body string) string {
	return strings.ToUpper(strings.Join(strings.Fields(body), ""))
}

func (h *Handler) inbound(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Twilio sends From in E.164, the form numbers are stored in.
	from := r.PostForm.Get("From")
	kw := Keyword(r.PostForm.Get("Body"))
	// A message is acted on once. Twilio's signature carries no time, so a
	// captured request stays valid: replaying a START after a STOP would
	// opt the number in again. Twilio's retries of one delivery share
	// I-Twilio-Idempotency-Token; a message, however delivered, has one
	// MessageSid.
	sid := r.PostForm.Get("MessageSid")
	if sid == "" {
		http.Error(w, "MessageSid is missing", http.StatusBadRequest)
		return
	}
	first, err := h.store.FirstInbound(ctx, sid)
	if err != nil {
		h.log.ErrorContext(ctx, "inbound text", "error", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if !first {
		h.log.InfoContext(ctx, "inbound text seen before: ignored", "message_sid", sid)
		twiml(w, "")
		return
	}
	switch {
	case stopWords[kw]:
		n, err := h.store.OptOutPhone(ctx, from)
		if err != nil {
			h.log.ErrorContext(ctx, "opt out by text", "error", err)
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		h.log.InfoContext(ctx, "opted out by text", "from", phone.Mask(from), "subscribers", n)
		twiml(w, "") // Twilio's own opt-out handling answers STOP
	case startWords[kw]:
		n, err := h.store.OptInPhone(ctx, from)
		if err != nil {
			h.log.ErrorContext(ctx, "opt in by text", "error", err)
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		h.log.InfoContext(ctx, "opted in by text", "from", phone.Mask(from), "subscribers", n)
		twiml(w, "")
	case helpWords[kw]:
		twiml(w, h.cfg.HelpText)
	case ackWords[firstWord(r.PostForm.Get("Body"))]:
		h.acknowledge(w, r, from)
	default:
		twiml(w, h.cfg.HelpText)
	}
}

// acknowledge records an OK reply as the acknowledgement, by the sender's
// home, of the latest incident awaiting it, and says so.
func (h *Handler) acknowledge(w http.ResponseWriter, r *http.Request, from string) {
	ctx := r.Context()
	t, err := h.store.LatestAwaitingAck(ctx, from, h.cfg.AckImpacts)
	if errors.Is(err, store.ErrNotFound) {
		twiml(w, "Thank you. There is nothing waiting for your confirmation.")
		return
	}
	if err != nil {
		h.log.ErrorContext(ctx, "acknowledge by text", "error", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	// The reply is kept as the note, cut to 1,000 characters (not bytes:
	// a cut inside a character would be refused by PostgreSQL).
	note := strings.TrimSpace(strings.ToValidUTF8(r.PostForm.Get("Body"), ""))
	if rs := []rune(note); len(rs) > maxNote {
		note = string(rs[:maxNote])
	}
	if _, _, err := h.store.Acknowledge(ctx, store.Ack{
		IncidentID: t.IncidentID, Home: t.Home, EventID: t.EventID, SubscriberID: t.SubscriberID,
		Via: store.AckViaSMS, Note: note,
	}); err != nil {
		h.log.ErrorContext(ctx, "acknowledge by text", "error", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	h.log.InfoContext(ctx, "incident acknowledged", "incident_id", t.IncidentID, "home", t.Home, "via", store.AckViaSMS, "from", phone.Mask(from))
	twiml(w, "Thank you: your home is marked as having seen this. Nobody else there needs to reply.")
}

// twiml answers with a TwiML response, with one message when text is set.
func twiml(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><Response>`)
	if text != "" {
		b.WriteString("<Message>")
		xmlEscape(&b, text)
		b.WriteString("</Message>")
	}
	b.WriteString("</Response>")
	_, _ = w.Write([]byte(b.String()))
}

func xmlEscape(b *strings.Builder, s string) {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	b.WriteString(r.Replace(s))
}
