// Command crier-bench measures crier end to end: it creates a fresh
// database with N subscribers, starts loopback SMTP and Twilio sinks, runs
// crier's serve path in-process, publishes events through JetStream, waits
// until the sinks accepted every expected message, checks none is missing or
// doubled, and prints throughput, latency, CPU and memory.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	_ "time/tzdata"

	"github.com/crier-dev/crier/internal/bench"
)

func main() {
	var cfg bench.Config
	channels := flag.String("channels", "both", "email, sms or both")
	flag.StringVar(&cfg.ServerURL, "database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL URL with rights to create a database")
	flag.IntVar(&cfg.Subscribers, "subscribers", 100_000, "number of subscribers")
	flag.IntVar(&cfg.Events, "events", 1, "events published one after another (each fully delivered before the next)")
	flag.DurationVar(&cfg.SMTPLatency, "smtp-latency", 0, "delay before the SMTP sink accepts each message (e.g. 20ms)")
	flag.DurationVar(&cfg.TwilioLatency, "twilio-latency", 0, "delay before the Twilio sink answers each request (e.g. 150ms)")
	flag.IntVar(&cfg.SMTPPool, "smtp-pool", 32, "CRIER_SMTP_POOL")
	flag.IntVar(&cfg.Workers, "workers", 64, "CRIER_DELIVERY_WORKERS (sends in flight per channel)")
	flag.Float64Var(&cfg.EmailRate, "email-rate", 0, "CRIER_EMAIL_RATE (0 = unlimited)")
	flag.Float64Var(&cfg.SMSRate, "sms-rate", 0, "CRIER_SMS_RATE (0 = unlimited)")
	flag.DurationVar(&cfg.Timeout, "timeout", 0, "how long to wait for one event's deliveries (default 5m)")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the database afterwards")
	flag.IntVar(&cfg.Critical, "critical", 0, "make each event a maintenance notice and, once it is sending, publish a critical incident to this many more subscribers; report how long they took")
	flag.DurationVar(&cfg.AnalyzeEmpty, "analyze-empty", 0, "after ANALYZE of the empty queue, let crier poll it idle this long before the first event (e.g. 1m)")
	verbose := flag.Bool("v", false, "show crier's log")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	memProfile := flag.String("memprofile", "", "write a heap profile (allocations during the run) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "crier-bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "crier-bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	switch *channels {
	case "email":
		cfg.Email = true
	case "sms":
		cfg.SMS = true
	case "both":
		cfg.Email, cfg.SMS = true, true
	default:
		fmt.Fprintln(os.Stderr, "crier-bench: --channels must be email, sms or both")
		os.Exit(2)
	}
	if *verbose {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crier-bench:", err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			fmt.Fprintln(os.Stderr, "crier-bench:", err)
			os.Exit(1)
		}
	}
	if !rep.OK() {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// writeHeapProfile writes the heap profile, whose alloc_space and
// alloc_objects samples cover every allocation since the start.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("write heap profile: %w", err)
	}
	return f.Close()
}
