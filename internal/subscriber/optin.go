package subscriber

// The double opt-in: what the subscribe page sets in motion.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/publicurl"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/token"
)

// Offers reports whether the channel has a sender in this process, so
// that the subscribe page can take its addresses.
func (s *Service) Offers(channel string) bool {
	snd, ok := s.senders[channel]
	return ok && snd != nil
}

// CheckRequest is Check for a request from the public subscribe page: an
// address given on a channel that is not offered (see Offers) is refused
// on its field with ErrChannelOff, before any other rule.
func (s *Service) CheckRequest(ctx context.Context, cat Catalog, in Input) (Details, error) {
	var p problems
	for _, a := range [...]struct {
		field, channel, reason string
		v                      *string
	}{
		{"email", deliver.ChannelEmail, "email notifications are not available", in.Email},
		{"phone", deliver.ChannelSMS, "text messages are not available", in.Phone},
	} {
		if a.v != nil && strings.TrimSpace(*a.v) != "" && !s.Offers(a.channel) {
			p.add(a.field, ErrChannelOff, a.reason)
		}
	}
	d, err := s.check(ctx, cat, nil, in, &p)
	if err != nil {
		return Details{}, err
	}
	return d, p.err()
}

// Sent says what happened to each confirmation message; a nil error means
// it was handed to the provider (or no message was due).
type Sent struct {
	Email, SMS error
}

// Subscribe records a request checked by CheckRequest and sends the
// confirmation messages: an email address gets a confirmation link (or,
// when it already gets notifications, its manage link), a phone number a
// texted code. Its error is about storing; sending problems are in Sent
// (ErrChannelOff for a channel without a sender).
func (s *Service) Subscribe(ctx context.Context, d Details) (Sent, error) {
	var res Sent
	if err := s.canOptIn(); err != nil {
		return res, err
	}
	got, err := s.store.SelfSubscribe(ctx, store.NewSubscriber{
		Email: d.Email, Phone: d.Phone, Name: d.Name, Organisation: d.Organisation, Components: d.Components,
	})
	if err != nil {
		return res, err
	}
	if d.Email != "" {
		if got.EmailActive {
			res.Email = s.sendAlreadySubscribed(ctx, d.Email, got.EmailSubscriber)
		} else {
			res.Email = s.sendConfirmLink(ctx, d.Email, got.EmailSubscriber)
		}
	}
	if d.Phone != "" {
		res.SMS = s.sendCode(ctx, d.Phone, got.PhoneSubscriber)
	}
	return res, nil
}

func (s *Service) send(ctx context.Context, m deliver.Message) error {
	if !s.Offers(m.Channel) {
		return ErrChannelOff
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	_, err := s.senders[m.Channel].Send(ctx, m)
	return err
}

// confirmPurpose binds an email confirmation link to the address it was
// sent to.
func confirmPurpose(addr string) string {
	return token.PurposeConfirmEmail + ":" + strings.ToLower(addr)
}

// confirmURL is the email confirmation link for subscriber id's address
// addr; it expires after ConfirmTTL (the expiry is the token's version).
func (s *Service) confirmURL(id int64, addr string) string {
	exp := s.cfg.Now().Add(s.cfg.ConfirmTTL).Unix()
	tok := s.signer.Make(confirmPurpose(addr), id, uint32(exp))
	return publicurl.New(s.cfg.PublicURL).Confirm(id, tok)
}

// CheckConfirm returns the subscriber whose email address the link
// /confirm/{rawID}/{tok} confirms, or ErrLinkInvalid (also for a
// subscriber that does not exist). It confirms nothing.
func (s *Service) CheckConfirm(ctx context.Context, rawID, tok string) (store.Subscriber, error) {
	if err := s.canOptIn(); err != nil {
		return store.Subscriber{}, err
	}
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil || id < 0 {
		id = 0 // looked up all the same: every failure costs the same
	}
	sub, err := s.store.GetSubscriber(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Subscriber{}, err
	}
	gotID, exp, verr := s.signer.Verify(confirmPurpose(sub.Email), tok)
	if err != nil || verr != nil || gotID != id || sub.Email == "" || int64(exp) < s.cfg.Now().Unix() {
		return store.Subscriber{}, ErrLinkInvalid
	}
	return sub, nil
}

// Confirm checks the link as CheckConfirm does and confirms the email
// address; it returns the subscriber, or ErrLinkInvalid.
func (s *Service) Confirm(ctx context.Context, rawID, tok string) (store.Subscriber, error) {
	sub, err := s.CheckConfirm(ctx, rawID, tok)
	if err != nil {
		return store.Subscriber{}, err
	}
	err = s.store.ConfirmEmail(ctx, sub.ID, sub.Email)
	if errors.Is(err, store.ErrNotFound) {
		return store.Subscriber{}, ErrLinkInvalid
	}
	if err != nil {
		return store.Subscriber{}, err
	}
	return sub, nil
}

func (s *Service) sendConfirmLink(ctx context.Context, addr string, id int64) error {
	hours := int(s.cfg.ConfirmTTL.Round(time.Hour) / time.Hour)
	text := fmt.Sprintf(`Hello,

Someone, hopefully you, asked for %s incident notifications to be sent to this email address.

To confirm, open this link within %d hours:

%s

If you did not ask for this, ignore this email: nothing more will be sent to you.
`, s.cfg.SiteName, hours, s.confirmURL(id, addr))
	return s.send(ctx, deliver.Message{
		Channel: deliver.ChannelEmail, To: addr,
		Subject: "Confirm your " + s.cfg.SiteName + " incident notifications",
		Text:    text,
	})
}

func (s *Service) sendAlreadySubscribed(ctx context.Context, addr string, id int64) error {
	text := fmt.Sprintf(`Hello,

Someone, hopefully you, asked for %s incident notifications to be sent to this email address. It already gets them.

To change which services you hear about, or to unsubscribe, use your personal link:

%s

If you did not ask for this, you can ignore this email.
`, s.cfg.SiteName, s.links.ManageURL(id))
	return s.send(ctx, deliver.Message{
		Channel: deliver.ChannelEmail, To: addr,
		Subject: "You already get " + s.cfg.SiteName + " incident notifications",
		Text:    text,
	})
}

// codeHash is the stored form of a texted code: a hash of an HMAC (keyed
// with the signer's key) of the number and the code, so a leaked table
// does not give the codes away.
func (s *Service) codeHash(phoneNum, code string) []byte {
	mac := s.signer.Make(token.PurposeSMSCode+":"+phoneNum+":"+code, 0, 0)
	sum := sha256.Sum256([]byte(mac))
	return sum[:]
}

func newCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%06d", n.Int64()), nil
}

// sendCode texts a new code to phoneNum for subscriber id, replacing any
// code pending for the number.
func (s *Service) sendCode(ctx context.Context, phoneNum string, id int64) error {
	if _, ok := s.senders[deliver.ChannelSMS]; !ok {
		return ErrChannelOff
	}
	code, err := newCode()
	if err != nil {
		return err
	}
	if err := s.store.PutSMSCode(ctx, id, phoneNum, s.codeHash(phoneNum, code), s.cfg.CodeTTL); err != nil {
		return err
	}
	minutes := int(s.cfg.CodeTTL.Round(time.Minute) / time.Minute)
	return s.send(ctx, deliver.Message{
		Channel: deliver.ChannelSMS, To: phoneNum,
		Text: fmt.Sprintf("%s: your confirmation code is %s. It expires in %d minutes. If you did not ask for it, ignore this message.",
			s.cfg.SiteName, code, minutes),
	})
}

// VerifyCode checks a code entered for phoneNum (E.164) and confirms the
// number; it returns the subscriber's id. Every refusal wraps
// ErrCodeRefused; other errors are trouble with the database.
func (s *Service) VerifyCode(ctx context.Context, phoneNum, code string) (int64, error) {
	if err := s.canOptIn(); err != nil {
		return 0, err
	}
	id, err := s.store.CheckSMSCode(ctx, phoneNum, s.codeHash(phoneNum, code), s.cfg.CodeAttempts)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrCodeWrong) ||
		errors.Is(err, store.ErrCodeExpired) || errors.Is(err, store.ErrCodeSpent) {
		return 0, fmt.Errorf("%w: %w", ErrCodeRefused, err)
	}
	return id, err
}

// errNoOptIn is returned by the opt-in steps of a Service built without a
// Signer and Links (the command line's, which only checks and stores).
var errNoOptIn = errors.New("subscriber: the double opt-in needs Deps.Signer and Deps.Links")

func (s *Service) canOptIn() error {
	if s.signer == nil || s.links == nil {
		return errNoOptIn
	}
	return nil
}
