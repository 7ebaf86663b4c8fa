package httpapi

import "github.com/go-chi/chi/v5"

// SetTestSessionRoutes mounts f's routes among the session routes of a Server built from cfg.
func SetTestSessionRoutes(cfg *Config, f func(chi.Router)) { cfg.testSessionRoutes = f }

// NextThrottle exposes the throttle policy to the table test.
var NextThrottle = nextThrottle

// AddrKey exposes the throttle key of a client address.
var AddrKey = addrKey
