// Package strictjson decodes exactly one JSON value with no unknown fields: the one strict decode
// behind job specs, secret payloads, target configs and S3 credentials.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ErrTrailingData is returned when something other than white space follows the value.
var ErrTrailingData = errors.New("data after the JSON object")

// Decode parses raw into v, refusing unknown fields and anything after the value. The decoder's
// error is returned as is (callers describe it without echoing the input); trailing data is
// ErrTrailingData.
//
// The trailing check reads one more token and wants io.EOF: Decoder.More would accept a stray
// '}' or ']' after the object, because it only answers whether an enclosing array or object
// goes on.
func Decode(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailingData
	}
	return nil
}
