// Package config is the configuration of a Fulcrum node: a plain Config
// struct, its defaults (Default), a strict TOML loader (Load, which rejects
// unknown keys) and Validate, which reports every problem at once by TOML
// path.
//
// The package reads only the file it is given. Flags and the environment are
// cmd/fulcrum's business: it loads a file, overrides the fields whose flags
// were set, validates, and hands the result to the server, which copies it.
//
// In TOML, durations are strings with a unit (Duration) and sizes are
// integers or strings with a unit (Size). Config.TOML renders a fully
// commented document; docs/fulcrum.example.toml is Default().TOML() and a test
// keeps the two in step (go test -run TestExample -update rewrites it).
package config
