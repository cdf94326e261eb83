module github.com/autorefresh/autorefresh/interop

go 1.26.0

replace github.com/autorefresh/autorefresh => ../

require (
	github.com/autorefresh/autorefresh v0.1.0
	github.com/golang-jwt/jwt/v5 v5.3.1
)

require golang.org/x/sync v0.25.0 // indirect
