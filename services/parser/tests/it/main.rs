//! Integration tests of the parser service, against the real binary and real clients.

mod basics;
mod parse;
