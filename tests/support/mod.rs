pub mod gateway;
pub mod idp;
pub mod mock_upstream;
pub mod postgres;
