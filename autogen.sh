#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Generates configure and the Makefile.in files; they are never committed.
set -e
cd "$(dirname "$0")"
autoreconf -fi
