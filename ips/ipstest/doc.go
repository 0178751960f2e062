// Package ipstest holds test helpers for IPS caseloads: the checked-in sample
// caseload (Sample), decoded and checked. Synthetic caseloads come from
// package synth.
package ipstest
