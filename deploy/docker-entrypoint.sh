#!/bin/sh
# Maps a role name to its prodcat command; anything else goes to the prodcat CLI unchanged, so
# `docker run prodcat worker normalize` and `docker run prodcat normalize` are the same.
set -eu
role="${1:-}"
case "$role" in
  normalize|classify|embed|sample|drift|mappings) shift; exec prodcat worker "$role" "$@" ;;
  retrain-trigger) shift; exec prodcat worker retrain "$@" ;;
  retrain-job) shift; exec prodcat retrain run "$@" ;;
  web) shift; exec prodcat ui "$@" ;;
  api) shift; exec prodcat serve api "$@" ;;
  *) exec prodcat "$@" ;;
esac
