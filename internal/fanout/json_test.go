package fanout_test

import "encoding/json"

var (
	jsonMarshal   = json.Marshal
	jsonUnmarshal = json.Unmarshal
)
