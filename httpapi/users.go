package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// userRoutes: user accounts (admin only, routeRoles) and one's own password (everyone).
func (s *Server) userRoutes(r chi.Router) {
	r.Get("/users", s.listUsers)
	r.Post("/users", s.createUser)
	r.Put("/users/me/password", s.changeOwnPassword)
	r.Put("/users/{id}", s.updateUser)
	r.Delete("/users/{id}", s.deleteUser)
}

type userView struct {
	ID        int64  `json:"id"`
	Username  string `json:"username"`
	Role      string `json:"role"`
	CreatedAt int64  `json:"created_at"`
	UpdatedAt int64  `json:"updated_at"`
}

func viewUser(u storage.User) userView {
	return userView{ID: u.ID, Username: u.Username, Role: u.Role, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.db.Reader().ListUsers(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	items := make([]userView, 0, len(users))
	for _, u := range users {
		items = append(items, viewUser(u))
	}
	respond.JSON(w, http.StatusOK, map[string]any{"items": items})
}

type createUserBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

func validatePassword(pw, field string) error {
	if len(pw) < MinPasswordLen {
		return respond.BadRequest("invalid_password", fmt.Sprintf("password must be at least %d bytes long", MinPasswordLen)).
			Reason("min_length").Field(field).Param("min_length", MinPasswordLen)
	}
	return nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var body createUserBody
	if err := respond.DecodeJSON(r, &body); err != nil {
		respond.Error(w, r, err)
		return
	}
	username := strings.TrimSpace(body.Username)
	if err := validateUsername(username); err != nil {
		respond.Error(w, r, err)
		return
	}
	if !ValidRole(body.Role) {
		respond.Error(w, r, errInvalidRole())
		return
	}
	if err := validatePassword(body.Password, "password"); err != nil {
		respond.Error(w, r, err)
		return
	}
	hash, err := s.hashPassword(r.Context(), body.Password)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	u, err := s.db.Writer().CreateUser(r.Context(), username, hash, body.Role, s.now().Unix())
	if errors.Is(err, storage.ErrUsernameTaken) {
		respond.Error(w, r, respond.Conflict("username_taken", "a user with this username exists").Field("username"))
		return
	} else if err != nil {
		respond.Error(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Int64("new_user_id", u.ID).Str("role", u.Role).Msg("user created")
	respond.JSON(w, http.StatusCreated, viewUser(u))
}

type updateUserBody struct {
	Role     *string `json:"role"`
	Password *string `json:"password"`
}

// updateUser changes a user's role or sets a new password. Either one ends the user's sessions
// at once when it takes something away (a lower role, the old password): the user logs in again.
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) {
	id, ok := userIDParam(w, r)
	if !ok {
		return
	}
	var body updateUserBody
	if err := respond.DecodeJSON(r, &body); err != nil {
		respond.Error(w, r, err)
		return
	}
	if body.Role != nil && !ValidRole(*body.Role) {
		respond.Error(w, r, errInvalidRole())
		return
	}
	var hash string
	if body.Password != nil {
		if err := validatePassword(*body.Password, "password"); err != nil {
			respond.Error(w, r, err)
			return
		}
		var err error
		if hash, err = s.hashPassword(r.Context(), *body.Password); err != nil {
			respond.Error(w, r, err)
			return
		}
	}
	ctx := r.Context()
	now := s.now().Unix()
	var u storage.User
	err := s.db.Write(ctx, func(q storage.Q) error {
		old, err := q.GetUser(ctx, id)
		if err != nil {
			return err
		}
		endSessions := false
		if body.Role != nil && *body.Role != old.Role {
			if err := q.SetUserRole(ctx, id, *body.Role, now); err != nil {
				return err
			}
			endSessions = roleRank[*body.Role] < roleRank[old.Role]
		}
		if hash != "" {
			if err := q.SetUserPassword(ctx, id, hash, now); err != nil {
				return err
			}
			// A reset password is presumed known to someone else: the tokens made with it go too.
			if _, err := q.DeleteUserAPITokens(ctx, id); err != nil {
				return err
			}
			endSessions = true
		}
		if endSessions {
			if err := q.DeleteUserSessions(ctx, id, ""); err != nil {
				return err
			}
		}
		u, err = q.GetUser(ctx, id)
		return err
	})
	if err != nil {
		respond.Error(w, r, userError(err))
		return
	}
	s.signOuts.happened() // a lowered role or a new password ended sessions and tokens
	zerolog.Ctx(ctx).Info().Int64("target_user_id", id).Bool("role_set", body.Role != nil).
		Bool("password_set", body.Password != nil).Msg("user updated")
	respond.JSON(w, http.StatusOK, viewUser(u))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	id, ok := userIDParam(w, r)
	if !ok {
		return
	}
	// The user's sessions and API tokens go with the row (ON DELETE CASCADE).
	if err := s.db.Writer().DeleteUser(r.Context(), id); err != nil {
		respond.Error(w, r, userError(err))
		return
	}
	s.signOuts.happened()
	if id == UserID(r) {
		clearSessionCookie(w, r)
	}
	zerolog.Ctx(r.Context()).Info().Int64("target_user_id", id).Msg("user deleted")
	respond.NoContent(w)
}

type changePasswordBody struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// changeOwnPassword sets the caller's password after checking the current one, and ends the
// user's other sessions: whoever learnt the old password is logged out.
func (s *Server) changeOwnPassword(w http.ResponseWriter, r *http.Request) {
	var body changePasswordBody
	if err := respond.DecodeJSON(r, &body); err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := validatePassword(body.NewPassword, "new_password"); err != nil {
		respond.Error(w, r, err)
		return
	}
	ctx := r.Context()
	p, _ := PrincipalOf(r)
	// Guesses at the current password count against the same limits as logins: a stolen session
	// must not become a way to find the password.
	res, wait, err := s.throttle.reserve(ctx, loginKeys(middleware.GetClient(r).IP, p.Username))
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if wait > 0 {
		refuseThrottled(w, r, wait, "attempts")
		return
	}
	_, ok, err := s.checkCredentials(ctx, p.Username, body.CurrentPassword)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if !ok {
		respond.Error(w, r, respond.Forbidden("invalid_current_password", "the current password is wrong").
			Field("current_password"))
		return
	}
	hash, err := s.hashPassword(ctx, body.NewPassword)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	keep, _ := ctx.Value(sessionIDKey).(string)
	err = s.db.Write(ctx, func(q storage.Q) error {
		if err := refund(ctx, q, res); err != nil {
			return err
		}
		if err := q.SetUserPassword(ctx, p.UserID, hash, s.now().Unix()); err != nil {
			return err
		}
		// Whoever knew the old password may have made tokens with it: they are revoked with the
		// other sessions.
		if _, err := q.DeleteUserAPITokens(ctx, p.UserID); err != nil {
			return err
		}
		return q.DeleteUserSessions(ctx, p.UserID, keep)
	})
	if err != nil {
		respond.Error(w, r, userError(err))
		return
	}
	s.signOuts.happened()
	zerolog.Ctx(ctx).Info().Msg("password changed")
	respond.NoContent(w)
}

func userIDParam(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		respond.Error(w, r, errUserNotFound())
		return 0, false
	}
	return id, true
}

func errUserNotFound() error { return respond.NotFound("user_not_found", "no such user") }

func userError(err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return errUserNotFound()
	case errors.Is(err, storage.ErrLastAdmin):
		return respond.Conflict("last_admin", "this is the last administrator: make another user an administrator first").
			Reason("last_admin")
	}
	return err
}
