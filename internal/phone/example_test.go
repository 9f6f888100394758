package phone_test

import (
	"errors"
	"fmt"

	"github.com/crier-dev/crier/internal/phone"
)

func ExampleNormalize() {
	for _, in := range []string{"07400 123456", "0044 7400 123456", "020 7946 0000"} {
		e164, err := phone.Normalize(in, "GB")
		switch {
		case errors.Is(err, phone.ErrNotMobile):
			fmt.Println("refused:", err)
		case err != nil:
			fmt.Println("invalid:", err)
		default:
			fmt.Println(e164, phone.Mask(e164))
		}
	}
	// Output:
	// +447400123456 +44******3456
	// +447400123456 +44******3456
	// refused: not a mobile phone number: it is a fixed-line number; text messages need a mobile number
}
