package config

import "testing"

func TestAuthzPolicyFileComesFromTheFileAndTheEnvironmentOverridesIt(t *testing.T) {
	path := writeFile(t, "authz_policy_file: /etc/ca/authz.yaml\n")
	c, err := Load(path, MapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthzPolicyFile != "/etc/ca/authz.yaml" {
		t.Errorf("authz_policy_file = %q", c.AuthzPolicyFile)
	}
	c, err = Load(path, MapEnv(map[string]string{"CA_AUTHZ_POLICY_FILE": "/run/authz.yaml"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthzPolicyFile != "/run/authz.yaml" {
		t.Errorf("CA_AUTHZ_POLICY_FILE did not override: %q", c.AuthzPolicyFile)
	}
	if d := Default(); d.AuthzPolicyFile != "" {
		t.Errorf("the default configures an authz policy: %q", d.AuthzPolicyFile)
	}
	if _, err := Load(writeFile(t, "authz_policy: /x\n"), MapEnv(nil)); err == nil {
		t.Error("an unknown key next to authz_policy_file was accepted")
	}
}
