"""Coverage-guided fuzz targets for smtpx (atheris); see fuzz/README.md."""
