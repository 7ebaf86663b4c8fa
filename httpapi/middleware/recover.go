package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// Recover turns a handler panic into a 500 envelope and one error log line with the stack, so a
// bug in one handler never takes the Hub down. http.ErrAbortHandler is re-raised: it is how a
// handler asks net/http to abort the connection.
func Recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			zerolog.Ctx(r.Context()).Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("handler panicked")
			respond.Error(w, r, respond.New(http.StatusInternalServerError, "internal_error", "internal error"))
		}()
		next.ServeHTTP(w, r)
	})
}
