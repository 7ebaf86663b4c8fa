package respond

import (
	"errors"

	"github.com/bastion-backup/bastion/engine/names"
)

// DisplayName checks a display name with names.Display (the one rule for job and agent names)
// and returns it trimmed, or a 400 invalid_name with details.reason required, too_long or
// invalid_characters, details.field set to field and, for too_long, params.max_length.
func DisplayName(field, name string) (string, error) {
	n, err := names.Display(name)
	if err == nil {
		return n, nil
	}
	var ne *names.Error
	if !errors.As(err, &ne) {
		return "", err
	}
	e := BadRequest("invalid_name", ne.Message).Reason(ne.Reason).Field(field)
	if ne.Reason == names.ReasonTooLong {
		e.Param("max_length", names.MaxLen)
	}
	return "", e
}
