"""Compiled twins of the DATA reader and the header parser; imported only by smtpx._impl."""
