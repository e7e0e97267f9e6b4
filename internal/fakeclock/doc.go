// Package fakeclock provides a settable clock for tests: a store, a front
// end and the test share one, and the test moves time forward explicitly
// instead of sleeping. It is safe for concurrent use.
package fakeclock
