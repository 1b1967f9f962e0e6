//! Integration tests for strata-dockerfile, one module per topic.

mod corpus;
