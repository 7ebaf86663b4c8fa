package latest

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

func TestWriterKeepsNewestAndFlushesOnClose(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	block := make(chan struct{})
	first := make(chan struct{})
	w := Start(context.Background(), func(_ context.Context, v []byte) {
		mu.Lock()
		got = append(got, string(v))
		n := len(got)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-block // a slow database: values pile up meanwhile
		}
	})
	w.Set([]byte("v0"))
	<-first
	for i := 1; i <= 100; i++ {
		w.Set([]byte(fmt.Sprint("v", i)))
	}
	close(block)
	w.Close()
	w.Set([]byte("after close"))
	mu.Lock()
	defer mu.Unlock()
	if got[0] != "v0" || got[len(got)-1] != "v100" || len(got) > 3 {
		t.Fatalf("writes = %q: want v0, at most one intermediate value, then v100", got)
	}
}
