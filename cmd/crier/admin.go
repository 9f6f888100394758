package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
)

// openStore reads the configuration and connects to the database, applying
// migrations so admin commands work on a fresh database.
func openStore(ctx context.Context, e *env) (*store.Store, config.Config, error) {
	cfg, err := loadConfig(e)
	if err != nil {
		return nil, cfg, err
	}
	if err := cfg.RequireDatabase(); err != nil {
		return nil, cfg, err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return nil, cfg, err
	}
	if _, err := st.Migrate(ctx, nil); err != nil {
		st.Close()
		return nil, cfg, err
	}
	return st, cfg, nil
}

// parseSubFlags parses a sub-command's flags; a positional argument may come
// before the flags (crier components rm KEY --force).
func parseSubFlags(fs *flag.FlagSet, e *env, rest []string, help string) error {
	fs.Usage = func() { fmt.Fprint(fs.Output(), help); fs.PrintDefaults() }
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		rest = append(rest[1:], rest[0])
	}
	return parse(fs, e, rest)
}

// subcommand picks the sub-command (one of names) from args. It prints help
// and returns flag.ErrHelp for --help, or errUsage for anything else.
func subcommand(e *env, args []string, help string, names ...string) (string, []string, error) {
	if len(args) > 0 && contains(names, args[0]) {
		return args[0], args[1:], nil
	}
	fmt.Fprint(e.stderr, help)
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		return "", nil, flag.ErrHelp
	}
	fmt.Fprintf(e.stderr, "\nwant one of: %s\n", strings.Join(names, ", "))
	return "", nil, errUsage
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func cmdComponents(ctx context.Context, e *env, args []string) error {
	help := "Usage:\n  crier components list\n  crier components put KEY --name NAME [--description TEXT]\n  crier components rm KEY [--force]\n\n" +
		"Keys form a tree: atlas-sync/sync-pod-a is a child of atlas-sync, which must exist first.\n"
	sub, rest, err := subcommand(e, args, help, "list", "put", "rm")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("crier components "+sub, flag.ContinueOnError)
	name := fs.String("name", "", "display name (put)")
	desc := fs.String("description", "", "description (put)")
	force := fs.Bool("force", false, "remove the subtree and its subscriptions too (rm)")
	if err := parseSubFlags(fs, e, rest, help); err != nil {
		return err
	}
	st, _, err := openStore(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "list":
		cs, err := st.ListComponents(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tNAME\tDESCRIPTION")
		for _, c := range cs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Key, c.Name, c.Description)
		}
		return tw.Flush()
	case "put":
		if fs.NArg() != 1 || *name == "" {
			return errors.New("put needs a KEY and --name")
		}
		key := fs.Arg(0)
		if !event.ValidKey(key) {
			return fmt.Errorf("%q is not a component key: lower-case letters, digits and dashes, groups separated by /", key)
		}
		created, err := st.PutComponent(ctx, store.Component{Key: key, Name: *name, Description: *desc})
		if err != nil {
			return err
		}
		verb := "updated"
		if created {
			verb = "created"
		}
		e.printf("%s %s\n", verb, key)
	case "rm":
		if fs.NArg() != 1 {
			return errors.New("rm needs a KEY")
		}
		if err := st.DeleteComponent(ctx, fs.Arg(0), *force); err != nil {
			if errors.Is(err, store.ErrInUse) {
				return fmt.Errorf("%w (use --force to remove them too)", err)
			}
			return err
		}
		e.printf("removed %s\n", fs.Arg(0))
	}
	return nil
}

func cmdSubscribers(ctx context.Context, e *env, args []string) error {
	help := "Usage:\n  crier subscribers list\n  crier subscribers export > subscribers.csv\n  crier subscribers add [--email A] [--phone N] [--name N] [--organisation O] --component KEY [--confirmed]\n  crier subscribers rm ID\n\n" +
		"Without --confirmed a channel waits for the subscriber to confirm it (double opt-in).\n" +
		"export writes CSV in the columns POST /v1/subscribers/import takes, plus each channel's state.\n"
	sub, rest, err := subcommand(e, args, help, "list", "export", "add", "rm")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("crier subscribers "+sub, flag.ContinueOnError)
	emailAddr := fs.String("email", "", "email address (add)")
	phoneNum := fs.String("phone", "", "mobile number, national or E.164 (add)")
	name := fs.String("name", "", "name (add)")
	org := fs.String("organisation", "", "care home or organisation (add)")
	confirmed := fs.Bool("confirmed", false, "mark the given channels as confirmed (add)")
	var components stringList
	fs.Var(&components, "component", "component key to follow (repeat or separate with commas) (add)")
	if err := parseSubFlags(fs, e, rest, help); err != nil {
		return err
	}
	st, cfg, err := openStore(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "list":
		return listSubscribers(ctx, e, st)
	case "export":
		return subscriber.ExportCSV(ctx, st, e.stdout)
	case "add":
		if *emailAddr == "" && *phoneNum == "" {
			return errors.New("add needs --email or --phone")
		}
		if len(components) == 0 {
			return errors.New("add needs at least one --component")
		}
		in := subscriber.Input{Name: name, Organisation: org, Components: (*[]string)(&components), Confirmed: *confirmed}
		if *emailAddr != "" {
			in.Email = emailAddr
		}
		if *phoneNum != "" {
			in.Phone = phoneNum
		}
		return addSubscriber(ctx, e, st, cfg, in)
	case "rm":
		if fs.NArg() != 1 {
			return errors.New("rm needs an ID")
		}
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a subscriber id", fs.Arg(0))
		}
		if err := st.DeleteSubscriber(ctx, id); err != nil {
			return err
		}
		e.printf("removed subscriber %d\n", id)
	}
	return nil
}

func channelCell(addr string, confirmed, optedOut bool) string {
	switch {
	case addr == "":
		return "-"
	case optedOut:
		return addr + " (opted out)"
	case !confirmed:
		return addr + " (unconfirmed)"
	}
	return addr
}

func cmdDeliveries(ctx context.Context, e *env, args []string) error {
	help := "Usage:\n  crier deliveries --event ID | --incident ID\n  crier deliveries retry --event ID | --incident ID\n\n" +
		"Shows how many deliveries are in each state per channel and lists the failures,\nor puts failed deliveries back in the queue.\n"
	retry := len(args) > 0 && args[0] == "retry"
	if retry {
		args = args[1:]
	}
	fs := flag.NewFlagSet("crier deliveries", flag.ContinueOnError)
	eventID := fs.String("event", "", "event id")
	incidentID := fs.String("incident", "", "incident id")
	limit := fs.Int("limit", 50, "most failures to list")
	fs.Usage = func() { fmt.Fprint(fs.Output(), help); fs.PrintDefaults() }
	if err := parse(fs, e, args); err != nil {
		return err
	}
	if (*eventID == "") == (*incidentID == "") {
		fmt.Fprint(e.stderr, help)
		return errors.New("give exactly one of --event and --incident")
	}
	sc := store.Scope{EventID: *eventID, IncidentID: *incidentID}
	st, _, err := openStore(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	if retry {
		n, err := st.RetryFailed(ctx, sc)
		if err != nil {
			return err
		}
		e.printf("requeued %d failed deliveries\n", n)
		return nil
	}
	counts, err := st.CountDeliveries(ctx, sc)
	if err != nil {
		return err
	}
	if len(counts) == 0 {
		e.printf("no deliveries\n")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSTATE\tCOUNT")
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", c.Channel, c.State, c.Count)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	failed, err := st.ListDeliveries(ctx, store.DeliveryFilter{Scope: sc, State: store.StateFailed, Limit: *limit})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		e.printf("\nfailures:\n")
		tw = tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEVENT\tCHANNEL\tTO\tATTEMPTS\tCODE\tERROR")
		for _, d := range failed {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.EventID, d.Channel, d.Address, d.Attempts, d.ErrorCode, d.LastError)
		}
		return tw.Flush()
	}
	return nil
}

// listSubscribers prints every subscriber, a page at a time.
func listSubscribers(ctx context.Context, e *env, st *store.Store) error {
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tPHONE\tNAME\tORGANISATION\tCOMPONENTS")
	var after int64
	for {
		subs, err := st.ListSubscribers(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, s := range subs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.ID, channelCell(s.Email, s.EmailConfirmedAt != nil, s.EmailOptedOutAt != nil),
				channelCell(s.Phone, s.SMSConfirmedAt != nil, s.SMSOptedOutAt != nil), s.Name, s.Organisation, strings.Join(s.Components, ","))
			after = s.ID
		}
		if len(subs) < 500 {
			break
		}
	}
	return tw.Flush()
}

// addFlags names the flag of each subscriber field, for refusals.
var addFlags = map[string]string{"email": "--email", "phone": "--phone", "name": "--name", "organisation": "--organisation", "components": "--component"}

// addSubscriber creates a subscriber with the rules every other way of
// creating one follows (package subscriber).
func addSubscriber(ctx context.Context, e *env, st *store.Store, cfg config.Config, in subscriber.Input) error {
	subs, err := subscriber.New(subscriber.Config{PhoneRegion: cfg.PhoneRegion, PublicURL: cfg.PublicURL}, subscriber.Deps{Store: st})
	if err != nil {
		return err
	}
	sub, err := subs.Create(ctx, in)
	var inv *subscriber.InvalidError
	var fe *subscriber.FieldError
	switch {
	case errors.As(err, &inv):
		msgs := make([]string, len(inv.Fields))
		for i, f := range inv.Fields {
			msgs[i] = addFlags[f.Field] + ": " + f.Reason
		}
		return errors.New(strings.Join(msgs, "; "))
	case errors.As(err, &fe):
		return fmt.Errorf("%s: %s", addFlags[fe.Field], fe.Reason)
	case errors.Is(err, subscriber.ErrConflict):
		return errors.New("a subscriber with this email address or phone number already exists")
	case err != nil:
		return err
	}
	e.printf("created subscriber %d\n", sub.ID)
	return nil
}
