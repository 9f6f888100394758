package httpapi

// Double opt-in: what the subscribe page sets in motion. Nothing here knows
// about HTTP; the handlers in selfservice.go call it and choose the answer.

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
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/token"
)

// errLinkInvalid is every reason a confirmation link does not verify.
var errLinkInvalid = errors.New("confirmation link not valid")

// errChannelOff means the channel has no sender in this process.
var errChannelOff = errors.New("channel not configured")

// optIn runs the double opt-in: a subscribe request creates unconfirmed
// subscribers for new addresses and sends each address a way to confirm it
// (an email link, a texted code) directly through the channel's sender,
// not through the delivery ledger. Addresses that already exist are not
// changed, and get a message too, so the requester cannot tell new from
// known addresses.
type optIn struct {
	cfg     Config
	store   *store.Store
	signer  *token.Signer
	links   Links
	senders map[string]deliver.Sender
}

// subscribeRequest is a validated request from the subscribe page.
// Addresses are normalised (the phone in E.164).
type subscribeRequest struct {
	Email, Phone       string
	Name, Organisation string
	Components         []string
}

// sendResult says what happened to each confirmation message; a nil error
// means it was handed to the provider.
type sendResult struct {
	Email, SMS error
}

// subscribe records the request and sends the confirmation messages. Its
// error is about storing; sending problems are in the result.
func (o *optIn) subscribe(ctx context.Context, req subscribeRequest) (sendResult, error) {
	var res sendResult
	got, err := o.store.SelfSubscribe(ctx, store.NewSubscriber{
		Email: req.Email, Phone: req.Phone, Name: req.Name, Organisation: req.Organisation, Components: req.Components,
	})
	if err != nil {
		return res, err
	}
	if req.Email != "" {
		if got.EmailActive {
			res.Email = o.sendAlreadySubscribed(ctx, req.Email, got.EmailSubscriber)
		} else {
			res.Email = o.sendConfirmLink(ctx, req.Email, got.EmailSubscriber)
		}
	}
	if req.Phone != "" {
		res.SMS = o.sendCode(ctx, req.Phone, got.PhoneSubscriber)
	}
	return res, nil
}

func (o *optIn) send(ctx context.Context, m deliver.Message) error {
	s, ok := o.senders[m.Channel]
	if !ok || s == nil {
		return errChannelOff
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.SendTimeout)
	defer cancel()
	_, err := s.Send(ctx, m)
	return err
}

// confirmPurpose binds an email confirmation link to the address it was
// sent to.
func confirmPurpose(addr string) string {
	return token.PurposeConfirmEmail + ":" + strings.ToLower(addr)
}

// confirmURL is the email confirmation link for subscriber id's address
// addr; it expires after ConfirmTTL (the expiry is the token's version).
func (o *optIn) confirmURL(id int64, addr string) string {
	exp := o.cfg.Now().Add(o.cfg.ConfirmTTL).Unix()
	tok := o.signer.Make(confirmPurpose(addr), id, uint32(exp))
	return o.cfg.PublicURL + "/confirm/" + strconv.FormatInt(id, 10) + "/" + tok
}

// checkConfirm returns the subscriber whose email address the link
// confirms, or errLinkInvalid (also for a subscriber that does not exist).
func (o *optIn) checkConfirm(ctx context.Context, rawID, tok string) (store.Subscriber, error) {
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil || id < 0 {
		id = 0 // looked up all the same: every failure costs the same
	}
	sub, err := o.store.GetSubscriber(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Subscriber{}, err
	}
	gotID, exp, verr := o.signer.Verify(confirmPurpose(sub.Email), tok)
	if err != nil || verr != nil || gotID != id || sub.Email == "" || int64(exp) < o.cfg.Now().Unix() {
		return store.Subscriber{}, errLinkInvalid
	}
	return sub, nil
}

func (o *optIn) sendConfirmLink(ctx context.Context, addr string, id int64) error {
	hours := int(o.cfg.ConfirmTTL.Round(time.Hour) / time.Hour)
	text := fmt.Sprintf(`Hello,

Someone, hopefully you, asked for %s incident notifications to be sent to this email address.

To confirm, open this link within %d hours:

%s

If you did not ask for this, ignore this email: nothing more will be sent to you.
`, o.cfg.SiteName, hours, o.confirmURL(id, addr))
	return o.send(ctx, deliver.Message{
		Channel: deliver.ChannelEmail, To: addr,
		Subject: "Confirm your " + o.cfg.SiteName + " incident notifications",
		Text:    text,
	})
}

func (o *optIn) sendAlreadySubscribed(ctx context.Context, addr string, id int64) error {
	text := fmt.Sprintf(`Hello,

Someone, hopefully you, asked for %s incident notifications to be sent to this email address. It already gets them.

To change which services you hear about, or to unsubscribe, use your personal link:

%s

If you did not ask for this, you can ignore this email.
`, o.cfg.SiteName, o.links.ManageURL(id))
	return o.send(ctx, deliver.Message{
		Channel: deliver.ChannelEmail, To: addr,
		Subject: "You already get " + o.cfg.SiteName + " incident notifications",
		Text:    text,
	})
}

// codeHash is the stored form of a texted code: a hash of an HMAC (keyed
// with the signer's key) of the number and the code, so a leaked table
// does not give the codes away.
func (o *optIn) codeHash(phoneNum, code string) []byte {
	mac := o.signer.Make(token.PurposeSMSCode+":"+phoneNum+":"+code, 0, 0)
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
func (o *optIn) sendCode(ctx context.Context, phoneNum string, id int64) error {
	if _, ok := o.senders[deliver.ChannelSMS]; !ok {
		return errChannelOff
	}
	code, err := newCode()
	if err != nil {
		return err
	}
	if err := o.store.PutSMSCode(ctx, id, phoneNum, o.codeHash(phoneNum, code), o.cfg.CodeTTL); err != nil {
		return err
	}
	minutes := int(o.cfg.CodeTTL.Round(time.Minute) / time.Minute)
	return o.send(ctx, deliver.Message{
		Channel: deliver.ChannelSMS, To: phoneNum,
		Text: fmt.Sprintf("%s: your confirmation code is %s. It expires in %d minutes. If you did not ask for it, ignore this message.",
			o.cfg.SiteName, code, minutes),
	})
}

// verifyCode checks a code entered for phoneNum and confirms the number;
// it returns the subscriber's id. Refusals wrap store.ErrNotFound,
// ErrCodeWrong, ErrCodeExpired or ErrCodeSpent.
func (o *optIn) verifyCode(ctx context.Context, phoneNum, code string) (int64, error) {
	return o.store.CheckSMSCode(ctx, phoneNum, o.codeHash(phoneNum, code), o.cfg.CodeAttempts)
}

// codeRefused reports whether err is a refusal of the code (as opposed to
// trouble with the database).
func codeRefused(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrCodeWrong) ||
		errors.Is(err, store.ErrCodeExpired) || errors.Is(err, store.ErrCodeSpent)
}
