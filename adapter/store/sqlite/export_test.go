package sqlite

// OpenWithBusyTimeout is Open with a busy wait of the test's choosing.
var OpenWithBusyTimeout = open
