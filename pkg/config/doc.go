// Package config exists so that the CA's settings are parsed and validated once,
// at start, into one typed Config (a strict YAML file plus the documented CA_*
// environment overrides); nothing else in the program reads environment
// variables or YAML configuration.
package config
