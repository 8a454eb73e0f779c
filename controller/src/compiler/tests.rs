//! Compiler tests: objects built with small helpers, compiled, and the table and diagnostics asserted.
