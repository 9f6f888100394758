package email

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/textproto"
	"strconv"
	"strings"

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
//   - 5xx to MAIL FROM: deliver.ChannelFault with the code. MAIL carries
//     only crier's own sender address (CRIER_MAIL_FROM), so its refusal is
//     a fault of the configuration or the relay account, not of the
//     recipient: the delivery is not failed for it, the channel pauses.
//   - 5xx at any later stage: deliver.PermanentError with the code; the
//     server's text stays in the wrapped error.
//   - 4xx (421 included): deliver.TransientError with the code.
//   - no reply (network failure, timeout, connection closed) or a reply that
//     makes no sense at this point: deliver.TransientError without a code.
func classify(st stage, err error) error {
	code := replyCode(err)
	switch {
	case code >= 500 && code < 600 && st == stageMail:
		return &deliver.ChannelFault{Code: strconv.Itoa(code), Err: err}
	case code >= 500 && code < 600:
		return deliver.Permanent(strconv.Itoa(code), err)
	case code != 0:
		return deliver.Transient(strconv.Itoa(code), err)
	default:
		return deliver.Transient("", err)
	}
}

// classifyConnect maps a failure to open a connection (TCP, TLS handshake,
// greeting, EHLO, STARTTLS, AUTH). A fault of the relay's or crier's
// configuration is a deliver.ChannelFault, which pauses the channel until
// an operator fixes it: a certificate that is not trusted, no STARTTLS
// offered while the URL requires it, a 5xx reply (AUTH refused, the
// greeting refusing this client). Anything else (the relay unreachable, a
// 4xx, a timeout) is a deliver.TransientError, retried with backoff.
func classifyConnect(err error) error {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch code := replyCode(err); {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &host), errors.As(err, &invalid):
		return &deliver.ChannelFault{Code: "tls", Err: err}
	case noSTARTTLS(err):
		return &deliver.ChannelFault{Code: "starttls", Err: err}
	case code >= 500 && code < 600:
		return &deliver.ChannelFault{Code: strconv.Itoa(code), Err: err}
	}
	return transient(err)
}

// noSTARTTLS reports whether err is go-mail's refusal to go on with a
// relay that does not offer STARTTLS while the TLS policy requires it.
// go-mail returns it as an untyped error, so its text is the only sign;
// TestSTARTTLSRequiredButNotOffered pins it, so a go-mail upgrade that
// rewords it fails that test rather than this check silently.
func noSTARTTLS(err error) bool {
	return strings.Contains(err.Error(), "target host does not support STARTTLS")
}

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
