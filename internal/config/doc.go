// Package config parses and validates the Yatagarasu YAML file shared by extproc and xds.
package config
