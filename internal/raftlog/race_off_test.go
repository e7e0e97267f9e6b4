//go:build !race

package raftlog

// raceEnabled scales randomized tests down under the race detector, which
// makes Pebble an order of magnitude slower.
const raceEnabled = false
