package autorefresh_test

import (
	"crypto/ecdsa"
	"fmt"
	"os"
	"path/filepath"

	"github.com/autorefresh/autorefresh"
)

// Keep the DPoP key in a file beside the token file of a FileStore: a
// DPoP-bound refresh token works only with the key it was bound to, so the
// key has to survive restarts as the tokens do.
func ExampleLoadOrCreateKey() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	// The tokens go to filepath.Join(dir, "tokens.json") (a FileStore),
	// the key beside them.
	keyFile := filepath.Join(dir, "dpop-key.pem")

	// The first run creates the key (ECDSA P-256, mode 0600); later runs
	// load the same one.
	key, err := autorefresh.LoadOrCreateKey(keyFile)
	if err != nil {
		fmt.Println(err)
		return
	}
	afterRestart, err := autorefresh.LoadOrCreateKey(keyFile)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("same key after a restart:", afterRestart.(*ecdsa.PrivateKey).Equal(key))
	// Output:
	// same key after a restart: true
}
