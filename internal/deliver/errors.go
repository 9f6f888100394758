package deliver

import (
	"errors"
	"fmt"
	"time"
)

// PermanentError is a send failure that retrying cannot fix: an SMTP 5xx
// reply, an invalid number, a recipient who opted out at the provider. The
// delivery fails at once with Code and the error text recorded.
type PermanentError struct {
	// Code is the provider's code (SMTP reply code, Twilio error code), if any.
	Code string
	// OptOut reports that the recipient has opted out at the provider (Twilio
	// 21610): the subscriber is opted out of the channel as well.
	OptOut bool
	Err    error
}

func (e *PermanentError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("permanent (%s): %v", e.Code, e.Err)
	}
	return fmt.Sprintf("permanent: %v", e.Err)
}

func (e *PermanentError) Unwrap() error { return e.Err }

// TransientError is a send failure worth retrying: an SMTP 4xx reply, HTTP 429
// or 5xx, a timeout. RetryAfter, when positive, is the provider's requested
// minimum delay before the next attempt.
type TransientError struct {
	Code       string
	RetryAfter time.Duration
	Err        error
}

func (e *TransientError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("transient (%s): %v", e.Code, e.Err)
	}
	return fmt.Sprintf("transient: %v", e.Err)
}

func (e *TransientError) Unwrap() error { return e.Err }

// ChannelFault is a send failure caused by crier's own configuration or
// provider account, not by the recipient: a relay that refuses STARTTLS, a
// certificate that is not trusted, credentials refused, a sender address
// refused (5xx to MAIL FROM), a Twilio account or sender number that cannot
// send. Every delivery of the channel would fail the same way, so none is
// charged for it: the worker pauses the channel (see Worker), puts the
// delivery back in the queue with no attempt used, says why once, and
// probes with one delivery at a time until a send succeeds.
type ChannelFault struct {
	// Code is the provider's code (SMTP reply code, Twilio error code), if
	// any.
	Code string
	Err  error
}

func (e *ChannelFault) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("channel fault (%s): %v", e.Code, e.Err)
	}
	return fmt.Sprintf("channel fault: %v", e.Err)
}

func (e *ChannelFault) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with the given provider code.
func Permanent(code string, err error) error { return &PermanentError{Code: code, Err: err} }

// Transient wraps err as a TransientError with the given provider code.
func Transient(code string, err error) error { return &TransientError{Code: code, Err: err} }

// IsPermanent reports whether err (or anything it wraps) is a PermanentError.
// Errors of no known type are treated as transient: a network failure should
// be retried, and the attempt and age limits bound the retries.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
