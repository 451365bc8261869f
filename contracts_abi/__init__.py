"""The Ocean V4 contract interfaces tidewater uses, and tooling to deploy them locally."""
