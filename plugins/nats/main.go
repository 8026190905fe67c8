package main

import "github.com/evorelay/evorelay/sdk"

func main() { sdk.Serve(New()) }
