package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/stream"
)

// stringList is a repeatable flag that also accepts comma-separated values.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// publishFlags are the flags of crier publish.
type publishFlags struct {
	file, id, incident, kind, status, impact, title, body *string
	occurred, schedFor, schedUntil                        *string
	notify                                                *bool
	components                                            stringList
}

func newPublishFlags(fs *flag.FlagSet) *publishFlags {
	f := &publishFlags{
		file:       fs.String("file", "", "read the event's JSON from this file (- for standard input) instead of the flags"),
		id:         fs.String("id", "", "unique id of this update (the dedup key); default: <incident-id>-<unix time>"),
		incident:   fs.String("incident-id", "", "incident the update belongs to"),
		kind:       fs.String("kind", "incident", "incident, maintenance or drill"),
		status:     fs.String("status", "", "investigating, identified, monitoring, update, resolved, postmortem; or scheduled, in_progress, verifying, completed; or test (a drill)"),
		impact:     fs.String("impact", "major", "none, minor, major or critical"),
		title:      fs.String("title", "", "title of the incident"),
		body:       fs.String("body", "", "text of the update"),
		occurred:   fs.String("occurred-at", "", "RFC 3339 time of the update (default now)"),
		schedFor:   fs.String("scheduled-for", "", "maintenance start (RFC 3339)"),
		schedUntil: fs.String("scheduled-until", "", "maintenance end (RFC 3339)"),
		notify:     fs.Bool("notify", true, "notify subscribers (false records the update silently)"),
	}
	fs.Var(&f.components, "component", "affected component key (repeat or separate with commas)")
	return f
}

// raw is the event's JSON: the file's, or built from the flags.
func (f *publishFlags) raw() ([]byte, error) {
	if *f.file != "" {
		var raw []byte
		var err error
		if *f.file == "-" {
			raw, err = readAll(os.Stdin)
		} else {
			raw, err = os.ReadFile(*f.file)
		}
		if err != nil {
			return nil, fmt.Errorf("read event: %w", err)
		}
		return raw, nil
	}
	m := map[string]any{
		"incident_id": *f.incident, "kind": *f.kind, "status": *f.status, "impact": *f.impact,
		"title": *f.title, "body": *f.body, "components": []string(f.components), "notify": *f.notify,
	}
	now := time.Now().UTC()
	m["occurred_at"] = now.Format(time.RFC3339)
	if *f.occurred != "" {
		m["occurred_at"] = *f.occurred
	}
	m["id"] = *f.id
	if *f.id == "" {
		m["id"] = fmt.Sprintf("%s-%d", *f.incident, now.UnixNano())
	}
	if *f.schedFor != "" {
		m["scheduled_for"] = *f.schedFor
	}
	if *f.schedUntil != "" {
		m["scheduled_until"] = *f.schedUntil
	}
	return json.Marshal(m)
}

func cmdPublish(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("crier publish", flag.ContinueOnError)
	f := newPublishFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: crier publish --file event.json\n       crier publish --incident-id ID --status S --title T --component KEY [flags]\n\n"+
			"Publishes one event on JetStream (stream INCIDENTS) with Nats-Msg-Id set to its id,\nwaits for the stream's acknowledgement and prints it. Uses CRIER_NATS_URL.\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, e, args); err != nil {
		return err
	}
	raw, err := f.raw()
	if err != nil {
		return err
	}
	return publishRaw(ctx, e, raw)
}

// publishRaw checks raw as the consumer would (but for the catalog, which
// the consumer knows), publishes it on JetStream and prints the
// acknowledgement.
func publishRaw(ctx context.Context, e *env, raw []byte) error {
	ev, err := event.Decode(raw, time.Now())
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	nc, err := stream.Connect(cfg.NATSURL, "crier publish", cfg.NATSAuth)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		return err
	}
	ack, err := stream.Publish(ctx, js, ev, raw)
	if err != nil {
		return err
	}
	e.printf("published %s: stream %s sequence %d duplicate %t\n", ev.ID, ack.Stream, ack.Sequence, ack.Duplicate)
	return nil
}

// cmdDrill publishes a drill.
func cmdDrill(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("crier drill", flag.ContinueOnError)
	var components stringList
	fs.Var(&components, "component", "component whose homes rehearse (repeat or separate with commas)")
	title := fs.String("title", "", `title (default "Alerting drill")`)
	body := fs.String("body", "", "text after the test notice")
	escalate := fs.Bool("escalate", false, "escalate, as a major incident would, homes that do not acknowledge in time")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: crier drill --component KEY [--title T] [--body B] [--escalate]\n\n"+
			"Sends a clearly marked test (\"TEST: no action needed other than to confirm\") to every home\non the components, asking each to acknowledge it. Uses CRIER_NATS_URL.\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, e, args); err != nil {
		return err
	}
	if len(components) == 0 {
		return errors.New("drill needs at least one --component")
	}
	raw, err := event.Encode(event.NewDrill(time.Now(), components, *title, *body, *escalate))
	if err != nil {
		return err
	}
	return publishRaw(ctx, e, raw)
}

func readAll(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, event.MaxPayloadBytes+1))
	if err == nil && len(b) > event.MaxPayloadBytes {
		return nil, fmt.Errorf("event is larger than %d bytes", event.MaxPayloadBytes)
	}
	return b, err
}

func (e *env) printf(format string, args ...any) { fmt.Fprintf(e.stdout, format, args...) }
