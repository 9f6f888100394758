//go:build linux

// Package postfixtest runs a real, private Postfix instance for end-to-end
// tests: an SMTP server on a free loopback port that relays every message
// it accepts to another SMTP server (a Mailpit, see mailpittest), and that
// refuses or defers the recipients a test chooses.
//
// Postfix must be installed (apt-get install -y postfix; .ci/run does it)
// and the tests must run as root, as Postfix's master daemon requires: a
// missing binary fails the test rather than skipping it.
//
// Each Start makes a new instance under t.TempDir(): its own configuration
// directory (main.cf, master.cf and the recipient access table), queue
// directory, data directory, log file (maillog_file, printed when the test
// fails), host name and port. The instance is started as Postfix's
// "postfix start" does, in two steps: "postfix -c DIR check" creates the
// queue directories with their owners and modes and checks the
// configuration, then Postfix's master daemon runs as a child of the test
// process (not detached, so that it dies with the test: the test's cleanup
// stops it and reaps its children, and a watchdog shell stops it if the
// test process dies without cleaning up). The system's own instance
// (/etc/postfix, port 25) is neither read nor touched, and several
// instances run side by side.
package postfixtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// InstallHint is how to install Postfix where the tests run.
const InstallHint = "DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"

// Options configure an instance. RelayPort is required.
type Options struct {
	// RelayPort is the SMTP port on 127.0.0.1 every accepted message is
	// relayed to (relayhost = [127.0.0.1]:RelayPort, plain SMTP).
	RelayPort int

	// Refuse lists the recipients refused at RCPT TO with 554 (access(5)
	// action REJECT: "554 5.7.1 <addr>: Recipient address rejected: Access
	// denied"). Defer lists those deferred with "450 4.2.0 <addr>:
	// Recipient address rejected: try again later". An entry is an
	// access(5) pattern: a full address, "user@" or a domain.
	Refuse, Defer []string

	// SoftErrorLimit, HardErrorLimit and ErrorSleepTime are smtpd's
	// smtpd_soft_error_limit, smtpd_hard_error_limit and
	// smtpd_error_sleep_time. After the soft limit of errors (a refused
	// RCPT is one, the refused BDAT or DATA that follows is another)
	// without a delivered message, smtpd waits ErrorSleepTime before each
	// reply; at the hard limit it answers "421 4.7.0 ... Error: too many
	// errors" and disconnects. The counter is reset each time a message is
	// accepted. Zero limits keep Postfix's defaults (10 and 20); a zero
	// ErrorSleepTime means no delay (Postfix's default is 1s).
	SoftErrorLimit, HardErrorLimit int
	ErrorSleepTime                 time.Duration

	// Main holds further main.cf parameters, which override the harness's.
	Main map[string]string
}

// Server is a running Postfix instance.
type Server struct {
	// Port is smtpd's port on 127.0.0.1.
	Port int
	// Hostname is the instance's myhostname (in its greeting and EHLO).
	Hostname string
	// Dir holds the instance: conf/ (main.cf, master.cf, recipients),
	// queue/, data/ and the log file maillog.
	Dir       string
	ConfigDir string
	QueueDir  string
	LogFile   string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when master has exited
	waitErr error         // master's exit, once exited is closed
	stop    sync.Once

	watchdog     *exec.Cmd
	watchdogPipe *os.File // its stdin's other end
}

// Binary finds the postfix command on PATH or in /usr/sbin.
func Binary() (string, error) {
	if p, err := exec.LookPath("postfix"); err == nil {
		return p, nil
	}
	const p = "/usr/sbin/postfix"
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("postfix not found on PATH or in /usr/sbin: install it with %s", InstallHint)
	}
	return p, nil
}

var instances atomic.Int64

// Start runs a new Postfix instance with opts until the test ends, and
// returns once its smtpd answers with a greeting.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("postfixtest: Postfix's master daemon must be started as root (running as uid %d)", os.Geteuid())
	}
	if opts.RelayPort <= 0 {
		t.Fatal("postfixtest: Options.RelayPort is required")
	}
	postconf := filepath.Join(filepath.Dir(bin), "postconf")
	out, err := exec.Command(postconf, "-d", "-h", "daemon_directory").Output()
	if err != nil {
		t.Fatalf("postfixtest: %s -d -h daemon_directory: %v (reinstall with %s)", postconf, err, InstallHint)
	}
	master := filepath.Join(strings.TrimSpace(string(out)), "master")
	if _, err := os.Stat(master); err != nil {
		t.Fatalf("postfixtest: no master daemon: %v (reinstall with %s)", err, InstallHint)
	}

	dir := t.TempDir()
	s := &Server{
		Port:      freePort(t),
		Hostname:  fmt.Sprintf("postfixtest-%d-%d.crier.test", os.Getpid(), instances.Add(1)),
		Dir:       dir,
		ConfigDir: filepath.Join(dir, "conf"),
		QueueDir:  filepath.Join(dir, "queue"),
		LogFile:   filepath.Join(dir, "maillog"),
		exited:    make(chan struct{}),
	}
	// The postfix user's daemons work inside the queue directory, which
	// must be root's; the configuration tree must be root's and not
	// writable by others ("postfix check" says so otherwise).
	for _, d := range []string{s.ConfigDir, s.QueueDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := searchable(dir); err != nil {
		t.Fatal(err)
	}
	access, err := accessTable(opts)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"main.cf":    s.mainCF(opts),
		"master.cf":  s.masterCF(),
		"recipients": access,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(s.ConfigDir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Print the log when the test fails; registered before the stop so
	// that it runs after it and shows the whole life of the instance.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix instance %s (port %d), last lines of %s:\n%s", s.Hostname, s.Port, s.LogFile, s.LogTail(300))
		}
	})

	// Queue directories, owners, modes; configuration sanity.
	if out, err := exec.Command(bin, "-c", s.ConfigDir, "check").CombinedOutput(); err != nil {
		t.Fatalf("postfixtest: postfix -c %s check: %v\n%s\n%s", s.ConfigDir, err, out, s.LogTail(50))
	}

	setSubreaper()
	// Without -d the master daemon makes itself a session and process
	// group leader (so that its SIGTERM reaches every Postfix process of
	// the instance and nothing else) and sends its output to /dev/null;
	// it stays in the foreground as long as -w is not given.
	cmd := exec.Command(master, "-c", s.ConfigDir)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+s.ConfigDir)
	stderr, err := os.Create(filepath.Join(dir, "master.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("postfixtest: start %s: %v", master, err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.Stop)
	if err := s.startWatchdog(); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}

	if err := s.waitReady(30 * time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "master.stderr"))
		t.Fatalf("postfixtest: %v\nmaster stderr: %s", err, b)
	}
	return s
}

// mainCF is the instance's main.cf.
func (s *Server) mainCF(opts Options) string {
	p := map[string]string{
		"compatibility_level": "3.6",
		"queue_directory":     s.QueueDir,
		"data_directory":      filepath.Join(s.Dir, "data"),
		"mail_owner":          "postfix",
		"setgid_group":        "postdrop",
		"maillog_file":        s.LogFile,
		// postlogd writes only below these prefixes.
		"maillog_file_prefixes": s.Dir,

		"myhostname":           s.Hostname,
		"mydomain":             "crier.test",
		"myorigin":             "$myhostname",
		"mydestination":        "",
		"local_recipient_maps": "",
		"alias_maps":           "",
		"alias_database":       "",
		"notify_classes":       "",
		"biff":                 "no",
		"readme_directory":     "no",
		"append_dot_mydomain":  "no",

		"inet_interfaces": "127.0.0.1",
		"inet_protocols":  "ipv4",
		"mynetworks":      "127.0.0.0/8",
		"relayhost":       "[127.0.0.1]:" + strconv.Itoa(opts.RelayPort),

		"smtpd_relay_restrictions":     "permit_mynetworks, reject_unauth_destination",
		"smtpd_recipient_restrictions": "check_recipient_access texthash:" + filepath.Join(s.ConfigDir, "recipients"),
		"smtpd_peername_lookup":        "no",
		"smtpd_error_sleep_time":       strconv.Itoa(int(opts.ErrorSleepTime/time.Second)) + "s",
		"smtpd_tls_security_level":     "none",
		"smtp_tls_security_level":      "none",
	}
	if opts.ErrorSleepTime%time.Second != 0 {
		p["smtpd_error_sleep_time"] = strconv.FormatInt(opts.ErrorSleepTime.Milliseconds(), 10) + "ms"
	}
	if opts.SoftErrorLimit > 0 {
		p["smtpd_soft_error_limit"] = strconv.Itoa(opts.SoftErrorLimit)
	}
	if opts.HardErrorLimit > 0 {
		p["smtpd_hard_error_limit"] = strconv.Itoa(opts.HardErrorLimit)
	}
	for k, v := range opts.Main {
		p[k] = v
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by postfixtest for one test.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, p[k])
	}
	return b.String()
}

// masterCF is the instance's master.cf: the one smtpd, on the instance's
// port, and the services that take a message from it to the relay host.
// Nothing runs chrooted (chroot would need copies of /etc files in the
// queue directory).
func (s *Server) masterCF() string {
	return fmt.Sprintf(`# Written by postfixtest for one test.
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:%d inet n   -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`, s.Port)
}

// accessTable is the texthash table of check_recipient_access.
func accessTable(opts Options) (string, error) {
	var b strings.Builder
	for _, l := range []struct {
		keys   []string
		action string
	}{
		{opts.Refuse, "REJECT"},
		{opts.Defer, "450 4.2.0 try again later"},
	} {
		for _, k := range l.keys {
			if k == "" || strings.ContainsAny(k, " \t\r\n#<>") {
				return "", fmt.Errorf("postfixtest: %q is not an access(5) pattern", k)
			}
			fmt.Fprintf(&b, "%s %s\n", strings.ToLower(k), l.action)
		}
	}
	return b.String(), nil
}

// waitReady waits for smtpd's greeting.
func (s *Server) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	var last error
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("the master daemon exited at start: %v", s.waitErr)
		default:
		}
		if last = greet(addr); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("smtpd on %s gave no greeting within %s: %v", addr, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// greet connects to addr, reads a 220 greeting and says QUIT.
func greet(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
		if !strings.HasPrefix(line, "220") {
			return fmt.Errorf("greeting %q", strings.TrimSpace(line))
		}
		if len(line) > 3 && line[3] == ' ' {
			break
		}
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	_, _ = r.ReadString('\n')
	return nil
}

// SMTPURL is the CRIER_SMTP_URL for this instance (plain SMTP, local only).
func (s *Server) SMTPURL() string {
	return "smtp://127.0.0.1:" + strconv.Itoa(s.Port) + "?tls=none"
}

// Log returns the instance's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// LogTail returns the last n lines of the log.
func (s *Server) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(s.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// QueueLen counts the messages in the instance's queue: accepted and not
// yet relayed (incoming, active, deferred, hold). Zero, once the messages
// a test sent were accepted, means that every one has been handed to the
// relay host, or bounced (see the log).
func (s *Server) QueueLen() (int, error) {
	n := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		err := filepath.WalkDir(filepath.Join(s.QueueDir, q), func(_ string, d os.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return nil // moved on while we looked
				}
				return err
			}
			if d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Stop stops the instance: SIGTERM to the master daemon, which passes it
// on to its processes, then their exits are collected. Start registers it
// with t.Cleanup; it is idempotent.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.watchdog != nil {
			_ = s.watchdog.Process.Kill()
			_ = s.watchdog.Wait()
			_ = s.watchdogPipe.Close()
		}
		pgid := s.cmd.Process.Pid // the master daemon leads its own group
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.exited
		}
		reapGroup(pgid, 10*time.Second)
	})
}

// startWatchdog starts a shell that stops the instance when the test
// process dies without its cleanup (a panic in any test of the binary, a
// timeout, a kill): it waits for the end of a pipe whose other end only the
// test process holds, then sends SIGTERM to the master daemon's process
// group. (The master daemon's parent-death signal would not do: Linux
// clears it when the daemon changes its effective ids, as it does to
// create files owned by the postfix user.) The shell has its own process
// group, so that a Ctrl-C to the test does not kill it before it acts.
func (s *Server) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", `trap '' INT HUP QUIT; read line; kill -TERM "-$1" 2>/dev/null`,
		"postfixtest-watchdog", strconv.Itoa(s.cmd.Process.Pid))
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start the watchdog shell: %w", err)
	}
	s.watchdog, s.watchdogPipe = cmd, w
	return nil
}

var subreaper sync.Once

// setSubreaper makes the test process the child subreaper of its
// descendants (prctl PR_SET_CHILD_SUBREAPER), so that the Postfix daemons
// left when their master daemon exits become its children, to be reaped
// by reapGroup, instead of zombies of an init process that may not reap
// them. Other children are unaffected: they are waited for by their pid.
func setSubreaper() {
	subreaper.Do(func() {
		const prSetChildSubreaper = 36
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	})
}

// reapGroup collects the exits of the processes of group pgid (the Postfix
// daemons of a stopped instance), killing the ones left after wait/2.
func reapGroup(pgid int, wait time.Duration) {
	start := time.Now()
	killed := false
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil: // ECHILD: none left
			return
		case pid > 0:
			continue
		}
		if !killed && time.Since(start) > wait/2 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			killed = true
		}
		if time.Since(start) > wait {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// searchable makes dir and its parent (both the test's, made 0700 by
// t.TempDir) searchable by the postfix user, whose daemons fail without a
// word otherwise (postlogd cannot reach the log file), and checks that the
// directories above are.
func searchable(dir string) error {
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	for d := filepath.Dir(filepath.Dir(dir)); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("postfixtest: %s is not searchable by others, so Postfix's daemons (user postfix) cannot reach the instance below it: set TMPDIR to a directory they can reach, such as /tmp", d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
