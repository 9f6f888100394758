package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pace is a rate shared by every crier process of a deployment: a token
// bucket, the row Bucket of rate_buckets, refilled at PerSecond up to
// Burst tokens. Each process refills it lazily, from the time of the last
// refill, under the row's lock, so processes that come and go neither add
// to the rate nor hold a share of it.
type Pace struct {
	Bucket    string
	PerSecond float64
	Burst     float64 // at least 1; one second's worth is PerSecond
}

// ChannelPace is the pace of a channel at perSecond for the deployment,
// with a burst of at most one second's worth.
func ChannelPace(channel string, perSecond float64) Pace {
	return Pace{Bucket: "channel:" + channel, PerSecond: perSecond, Burst: max(1, perSecond)}
}

// refillSQL adds the tokens earned since the last refill, up to the burst,
// and locks the bucket's row until the transaction ends.
const refillSQL = `
	UPDATE rate_buckets
	SET tokens = least($3::float8, tokens + $2::float8 * greatest(0, extract(epoch FROM clock_timestamp() - refilled_at))),
	    refilled_at = clock_timestamp()
	WHERE name = $1
	RETURNING tokens`

// createBucketSQL makes a channel's bucket, full, unless it exists. It is
// never forgotten (full_at infinity): deleting it would hand the next
// claim a fresh burst.
const createBucketSQL = `INSERT INTO rate_buckets (name, tokens, full_at) VALUES ($1, $2, 'infinity') ON CONFLICT (name) DO NOTHING`

// claimPacedSQL is claimSQL that also takes one token of bucket $6 for
// each delivery it claims. The refill before it (in the same transaction)
// holds the bucket's lock.
var claimPacedSQL = fmt.Sprintf(claimSQLFormat, `, spent AS (
		UPDATE rate_buckets SET tokens = tokens - (SELECT count(*) FROM picked) WHERE name = $6
	)`)

// ClaimPaced is Claim for a channel paced for the whole deployment: it
// claims no more deliveries than pace's bucket holds tokens, and takes one
// for each, in the claim's transaction. A claim that stops short because
// the bucket ran dry returns wait, how long until it holds a token again;
// wait is zero when the queue, not the pace, ended the claim.
//
// It costs one round trip more than Claim (the claim's limit depends on
// the tokens) and serialises the claims of every process on the bucket's
// row for the length of one claim.
func (s *Store) ClaimPaced(ctx context.Context, channel string, limit int, owner string, lease time.Duration, pace Pace) (out []Claimed, wait time.Duration, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("claim %s deliveries: %w", channel, err)
		}
	}()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, 0, err
	}
	// A connection left inside the transaction by an error is closed by
	// the pool on release, which rolls the transaction back.
	defer conn.Release()
	var tokens float64
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	for _, set := range claimPlan {
		b.Queue(set)
	}
	b.Queue(createBucketSQL, pace.Bucket, pace.Burst)
	b.Queue(refillSQL, pace.Bucket, pace.PerSecond, pace.Burst).QueryRow(func(r pgx.Row) error { return r.Scan(&tokens) })
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, fmt.Errorf("refill %s: %w", pace.Bucket, err)
	}
	n := min(limit, int(math.Floor(tokens)))
	b = &pgx.Batch{}
	if n > 0 {
		queueClaim(b, claimPacedSQL, &out, channel, n, owner, lease.Milliseconds(), LeaseExpiredError, pace.Bucket)
	}
	b.Queue(`COMMIT`)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, err
	}
	if len(out) < n || n == limit {
		return out, 0, nil // the queue or the limit, not the pace, ended it
	}
	left := tokens - float64(len(out)) // less than one
	return out, time.Duration((1 - left) / pace.PerSecond * float64(time.Second)), nil
}

// forgetEvery is how many TakeToken calls of a process go by between two
// deletions of the buckets that are full again, which keeps rate_buckets
// about as large as the number of clients seen within one refill.
const forgetEvery = 256

// TakeToken takes one token from pace's bucket at time at, creating the
// bucket full if it does not exist, and reports whether there was one. It
// is one statement: the abuse limits of the public pages use it per client
// address or phone number, for every process of the deployment at once.
// The time comes from the caller (processes' clocks agree to well within
// the minutes these limits count in), so that tests can move it.
func (s *Store) TakeToken(ctx context.Context, pace Pace, at time.Time) (bool, error) {
	if s.takes.Add(1)%forgetEvery == 0 {
		if _, err := s.pool.Exec(ctx, forgetFullSQL, at); err != nil {
			return false, fmt.Errorf("forget full buckets: %w", err)
		}
	}
	var left float64
	err := s.pool.QueryRow(ctx, takeTokenSQL, pace.Bucket, pace.PerSecond, pace.Burst, at).Scan(&left)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("take a token of %s: %w", pace.Bucket, err)
	}
	return true, nil
}

// takeTokenSQL takes a token of bucket $1 (refilled at $2 per second up to
// $3) at time $4 if it has one; it returns no row when it has none.
const takeTokenSQL = `
	INSERT INTO rate_buckets AS b (name, tokens, refilled_at, full_at)
	VALUES ($1, $3::float8 - 1, $4, $4::timestamptz + interval '1 second' / $2::float8)
	ON CONFLICT (name) DO UPDATE
	SET tokens = least($3::float8, b.tokens + $2::float8 * greatest(0, extract(epoch FROM $4::timestamptz - b.refilled_at))) - 1,
	    refilled_at = greatest($4::timestamptz, b.refilled_at),
	    full_at = greatest($4::timestamptz, b.refilled_at) + interval '1 second' / $2::float8 *
	              ($3::float8 + 1 - least($3::float8, b.tokens + $2::float8 * greatest(0, extract(epoch FROM $4::timestamptz - b.refilled_at))))
	WHERE least($3::float8, b.tokens + $2::float8 * greatest(0, extract(epoch FROM $4::timestamptz - b.refilled_at))) >= 1
	RETURNING tokens`

// forgetFullSQL deletes the buckets that are full again at time $1: a
// missing bucket is a full one.
const forgetFullSQL = `DELETE FROM rate_buckets WHERE full_at < $1`
