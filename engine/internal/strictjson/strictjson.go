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

// Keys lists the member names of the JSON object raw in document order (a repeated name as often
// as it appears), for callers that report or keep fields in the order they were written. raw
// must already be known to be one object (json.Unmarshal into a map accepted it).
func Keys(raw []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
