"""evalpipe: evaluation dumps in, trustworthy versioned tables out."""
