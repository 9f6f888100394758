package email

import (
	"errors"
	"net"
	"net/textproto"
	"strconv"

	"github.com/crier-dev/crier/internal/deliver"
)

var (
	// ErrClosed is returned, inside a deliver.TransientError, by Send after
	// Close: the delivery can go out later through another sender.
	ErrClosed = errors.New("email: sender closed")

	// ErrInvalidMessage is returned, inside a deliver.PermanentError, for a
	// message that cannot be sent as given (a recipient that is not an
	// address, no body, a malformed Message-ID or unsubscribe target),
	// before anything is sent.
	ErrInvalidMessage = errors.New("email: invalid message")
)

// stage is the step of an SMTP transaction that failed.
type stage int

const (
	stageMail stage = iota
	stageRcpt
	stageData
	stageBody
	stageEnd
)

func (s stage) String() string {
	switch s {
	case stageMail:
		return "MAIL FROM"
	case stageRcpt:
		return "RCPT TO"
	case stageData:
		return "DATA"
	case stageBody:
		return "writing message"
	case stageEnd:
		return "end of DATA"
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// replyCode returns the SMTP reply code err carries (go-mail's smtp client
// returns replies it did not expect as *textproto.Error), or 0 when err is
// not a reply: a network failure, a timeout, a closed connection.
func replyCode(err error) int {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return tp.Code
	}
	return 0
}

// cleanRejection reports whether err is a server reply that refused one
// command but leaves the session usable after RSET: any 4xx or 5xx but 421,
// which announces that the server closes the connection.
func cleanRejection(err error) bool {
	code := replyCode(err)
	return code >= 400 && code < 600 && code != 421
}

// droppedWhileIdle reports whether err, from the first command on a reused
// connection, says that the server had closed it: a 421 reply or a failure
// without a reply that is not a timeout (end of file, reset, broken pipe).
func droppedWhileIdle(err error) bool {
	switch replyCode(err) {
	case 421:
		return true
	case 0:
		var ne net.Error
		return !errors.As(err, &ne) || !ne.Timeout()
	}
	return false
}

// classify maps a transaction that failed at st to the retry policy's
// types, by the reply code:
//
//   - 5xx to MAIL FROM: deliver.TransientError with the code. MAIL carries
//     only crier's own sender address (CRIER_MAIL_FROM), so its refusal is
//     a fault of the configuration or the relay account, not of the
//     recipient: the delivery is not failed for it.
//   - 5xx at any later stage: deliver.PermanentError with the code; the
//     server's text stays in the wrapped error.
//   - 4xx (421 included): deliver.TransientError with the code.
//   - no reply (network failure, timeout, connection closed) or a reply that
//     makes no sense at this point: deliver.TransientError without a code.
func classify(st stage, err error) error {
	code := replyCode(err)
	switch {
	case code >= 500 && code < 600 && st != stageMail:
		return deliver.Permanent(strconv.Itoa(code), err)
	case code != 0:
		return deliver.Transient(strconv.Itoa(code), err)
	default:
		return deliver.Transient("", err)
	}
}

// classifyConnect maps a failure to open a connection (TCP, TLS handshake,
// greeting, EHLO, STARTTLS, AUTH) to a deliver.TransientError, keeping the
// reply code when there is one. Even a 5xx here is transient: it is about
// the relay or crier's configuration (no STARTTLS offered while it is
// required, a wrong password, an untrusted certificate), not about the
// recipient. An operator fixes it and the deliveries go out; the retry
// policy's age limit bounds the wait.
func classifyConnect(err error) error { return transient(err) }

// transient is err as a deliver.TransientError, with its reply code when
// there is one. SendBatch uses it for a transaction that followed a failed
// one in the same pipelined group: whatever it was refused for, the session
// may have been in an unknown state.
func transient(err error) error {
	code := ""
	if c := replyCode(err); c != 0 {
		code = strconv.Itoa(c)
	}
	return deliver.Transient(code, err)
}
