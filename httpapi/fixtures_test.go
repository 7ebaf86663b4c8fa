package httpapi_test

import (
	"io/fs"
	"testing/fstest"
)

func fstestUI() fs.FS {
	return fstest.MapFS{"index.html": {Data: []byte("<!doctype html><div id=app></div>")}}
}
